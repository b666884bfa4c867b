"""Wait for a server Deployment to become ready, and say why it did not.

`classify_failure` is pure: it reads pods and events as the API serves them (camelCase JSON, as
`kubectl get -o json` prints them) and names the reason a server cannot start. `wait_until_ready`
polls through injected API objects and a clock, gives up early on reasons that will not heal on
their own (OOMKilled, CrashLoopBackOff, image pulls, missing Secrets, evictions) and returns the
reason instead of raising, so the run records a failed point and moves on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from servesweep.k8s.manifests import to_dict

_MAX_MESSAGE = 400
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}")  # hub tokens: hf_ + 34 letters/digits


class FailureKind(StrEnum):
    OOM_KILLED = "OOMKilled"
    CONFIG_ERROR = "CreateContainerConfigError"
    IMAGE_PULL = "ImagePullBackOff"
    CRASH_LOOP = "CrashLoopBackOff"
    EVICTED = "Evicted"
    REJECTED = "Rejected"  # the API server refused an object (quota, admission, invalid)
    UNSCHEDULABLE = "Unschedulable"
    # Unschedulable and the autoscaler cannot get the machines (stockout, exhausted reservation or quota) for any
    # capacity the ComputeClass or pool allows: not a spec error, and waiting longer is only worth it up to a point.
    NO_CAPACITY = "NoCapacity"
    TIMEOUT = "Timeout"


# Reasons that waiting will not cure; Unschedulable can (the autoscaler may still add a node).
FATAL = frozenset({
    FailureKind.OOM_KILLED, FailureKind.CONFIG_ERROR, FailureKind.IMAGE_PULL, FailureKind.CRASH_LOOP,
    FailureKind.EVICTED, FailureKind.REJECTED,
})
# The cluster autoscaler's scale-up failures (FailedScaleUp / NotTriggerScaleUp event messages; GKE's
# "GCE out of resources", Compute Engine's ZONE_RESOURCE_POOL_EXHAUSTED, stockout and quota errors).
_NO_CAPACITY = re.compile(r"(?i)(out of resources|resource_pool_exhausted|stockout|quota|no capacity|"
                          r"insufficient capacity|reservation.*(exhausted|not found|no available))")
_IMAGE_PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
_CONFIG_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class FailureReason:
    kind: FailureKind
    message: str
    pod: str | None = None
    container: str | None = None
    log_line: str | None = None

    @property
    def fatal(self) -> bool:
        return self.kind in FATAL

    def summary(self) -> str:
        """One line for the lake's failure_reason column."""
        where = "/".join(part for part in (self.pod, self.container) if part)
        text = f"{self.kind.value}: {self.message}" + (f" ({where})" if where else "")
        return text + (f" | last log line: {self.log_line}" if self.log_line else "")


def redact(text: str) -> str:
    """Hide anything shaped like a Hugging Face token before it reaches a log or the lake."""
    return _HF_TOKEN.sub("hf_***", text)


def _clip(text: str) -> str:
    text = redact(" ".join(text.split()))
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def last_log_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return _clip(lines[-1]) if lines else None


def classify_failure(
    pods: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] = (),
    logs: Mapping[str, str] | None = None,
) -> FailureReason | None:
    """Why the pods cannot serve, most fundamental reason first; None when nothing is wrong yet.

    `logs` maps "pod/container" to that container's log (its previous run's, after a crash).
    """
    pods = list(pods)
    events = list(events)
    found = [reason for pod in pods for reason in _pod_reasons(pod)] + _event_reasons(events)
    if not found:
        return None
    best = min(found, key=lambda reason: _PRIORITY.index(reason.kind))
    if best.kind == FailureKind.UNSCHEDULABLE:
        best = _with_autoscaler_note(best, events)
        if any(_NO_CAPACITY.search(e.get("message", "")) for e in events
               if e.get("reason") in ("FailedScaleUp", "NotTriggerScaleUp")):
            best = replace(best, kind=FailureKind.NO_CAPACITY)
    if logs and best.pod and best.container:
        best = replace(best, log_line=last_log_line(logs.get(f"{best.pod}/{best.container}")))
    return best


_PRIORITY = [
    FailureKind.OOM_KILLED, FailureKind.CONFIG_ERROR, FailureKind.IMAGE_PULL, FailureKind.CRASH_LOOP,
    FailureKind.EVICTED, FailureKind.REJECTED, FailureKind.UNSCHEDULABLE, FailureKind.NO_CAPACITY, FailureKind.TIMEOUT,
]


def _pod_reasons(pod: Mapping[str, Any]) -> list[FailureReason]:
    name = pod.get("metadata", {}).get("name")
    status = pod.get("status", {})
    reasons = []
    for container in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        reason = _container_reason(container)
        if reason:
            reasons.append(replace(reason, pod=name, container=container.get("name")))
    if status.get("reason") == "Evicted":
        reasons.append(FailureReason(FailureKind.EVICTED, _clip(status.get("message", "evicted")), name))
    for condition in status.get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reasons.append(FailureReason(
                FailureKind.UNSCHEDULABLE, _clip(condition.get("message", "pod cannot be scheduled")), name
            ))
    return reasons


def _container_reason(container: Mapping[str, Any]) -> FailureReason | None:
    state = container.get("state", {})
    last = container.get("lastState", {}).get("terminated", {})
    current = state.get("terminated", {})
    if "OOMKilled" in (last.get("reason"), current.get("reason")):
        return FailureReason(FailureKind.OOM_KILLED, "container ran out of memory (exit code 137)")
    waiting = state.get("waiting", {})
    reason, message = waiting.get("reason"), waiting.get("message", "")
    if reason in _CONFIG_REASONS:
        return FailureReason(FailureKind.CONFIG_ERROR, _clip(f"{reason}: {message}"))
    if reason in _IMAGE_PULL_REASONS:
        return FailureReason(FailureKind.IMAGE_PULL, _clip(f"{reason}: {message or container.get('image', '')}"))
    if reason == "CrashLoopBackOff":
        exit_code = last.get("exitCode")
        detail = f"exit code {exit_code}" if exit_code is not None else "restarting"
        restarts = container.get("restartCount", 0)
        return FailureReason(FailureKind.CRASH_LOOP, f"server keeps exiting ({detail}, {restarts} restarts)")
    return None


def _event_reasons(events: list[Mapping[str, Any]]) -> list[FailureReason]:
    """Reasons only events tell, e.g. when the pod is already gone or its status lags."""
    reasons = []
    for event in events:
        if event.get("type") != "Warning":
            continue
        reason, message = event.get("reason", ""), event.get("message", "")
        pod = event.get("involvedObject", {}).get("name")
        if reason == "OOMKilling":
            reasons.append(FailureReason(FailureKind.OOM_KILLED, _clip(message), pod))
        elif reason == "Failed" and ("ErrImagePull" in message or "pull" in message.lower()):
            reasons.append(FailureReason(FailureKind.IMAGE_PULL, _clip(message), pod))
        elif reason == "FailedScheduling":
            reasons.append(FailureReason(FailureKind.UNSCHEDULABLE, _clip(message), pod))
        elif reason == "Evicted":
            reasons.append(FailureReason(FailureKind.EVICTED, _clip(message), pod))
    return reasons


def _with_autoscaler_note(reason: FailureReason, events: list[Mapping[str, Any]]) -> FailureReason:
    """Say whether the cluster autoscaler is adding a node or gave up: the difference between wait and fix."""
    by_reason = {event.get("reason"): event.get("message", "") for event in events}
    if "NotTriggerScaleUp" in by_reason:
        note = f"autoscaler will not add a node: {by_reason['NotTriggerScaleUp']}"
    elif "FailedScaleUp" in by_reason:
        note = f"autoscaler could not add a node: {by_reason['FailedScaleUp']}"
    elif "TriggeredScaleUp" in by_reason:
        note = f"autoscaler is adding a node: {by_reason['TriggeredScaleUp']}"
    else:
        return reason
    return replace(reason, message=_clip(f"{reason.message}; {note}"))


@dataclass(frozen=True)
class Readiness:
    ready: bool
    seconds: float
    failure: FailureReason | None = None


def wait_until_ready(
    apps: k8s.AppsV1Api,
    core: k8s.CoreV1Api,
    *,
    namespace: str,
    name: str,
    label_selector: str,
    timeout_s: float,
    poll_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Readiness:
    """Poll until the Deployment has its replicas ready, a fatal reason shows, or time runs out."""
    started = clock()
    while True:
        if _deployment_ready(apps, namespace, name):
            return Readiness(True, clock() - started)
        pods, events = _observe(core, namespace, label_selector)
        failure = classify_failure(pods, events)
        if failure is not None and failure.fatal:
            return Readiness(False, clock() - started, _with_logs(core, namespace, failure))
        elapsed = clock() - started
        if elapsed >= timeout_s:
            return Readiness(False, elapsed, _timed_out(failure, pods, timeout_s))
        sleep(min(poll_s, timeout_s - elapsed))


def _deployment_ready(apps: k8s.AppsV1Api, namespace: str, name: str) -> bool:
    try:
        deployment = apps.read_namespaced_deployment(name, namespace)
    except ApiException as error:
        if error.status is not None and error.status >= 500:
            return False  # a hiccup of the API server must not end an hours-long sweep; poll again
        raise
    wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    return (deployment.status.ready_replicas or 0) >= wanted > 0


def _observe(core: k8s.CoreV1Api, namespace: str,
             label_selector: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pods = [to_dict(pod) for pod in core.list_namespaced_pod(namespace, label_selector=label_selector).items]
    names = {pod["metadata"]["name"] for pod in pods}
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.kind=Pod").items
    events = [to_dict(event) for event in events]
    return pods, [event for event in events if event.get("involvedObject", {}).get("name") in names]


def _with_logs(core: k8s.CoreV1Api, namespace: str, failure: FailureReason) -> FailureReason:
    if failure.kind not in (FailureKind.CRASH_LOOP, FailureKind.OOM_KILLED) or not failure.pod:
        return failure
    try:
        text = core.read_namespaced_pod_log(
            failure.pod, namespace, container=failure.container, previous=True, tail_lines=50
        )
    except ApiException:
        return failure  # the log is a bonus; the reason stands without it
    return replace(failure, log_line=last_log_line(text))


def _timed_out(failure: FailureReason | None, pods: list[dict[str, Any]], timeout_s: float) -> FailureReason:
    if failure is not None:
        return replace(failure, message=f"{failure.message} (still after {timeout_s:.0f}s)")
    phases = ", ".join(f"{p['metadata']['name']}={p.get('status', {}).get('phase', '?')}" for p in pods) or "no pods"
    return FailureReason(FailureKind.TIMEOUT, f"not ready after {timeout_s:.0f}s ({phases})")
