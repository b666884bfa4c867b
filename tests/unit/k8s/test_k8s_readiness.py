"""The failure classifier on recorded pod/event fixtures, and the readiness waiter on fake APIs."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from servesweep.k8s.readiness import FailureKind, classify_failure, redact, wait_until_ready
from tests.support.k8s_fakes import FakeApps, FakeClock, FakeCore, api_error, load_fixture

CASES = [
    # fixture, kind, fatal, words the message must hold
    ("oom_killed", FailureKind.OOM_KILLED, True, ["out of memory", "137"]),
    ("unschedulable_insufficient_gpu", FailureKind.UNSCHEDULABLE, False,
     ["Insufficient nvidia.com/gpu", "autoscaler will not add a node", "max node group size reached"]),
    ("pending_scale_up", FailureKind.UNSCHEDULABLE, False, ["autoscaler is adding a node", "0->1"]),
    ("no_capacity_stockout", FailureKind.NO_CAPACITY, False,
     ["autoscaler could not add a node", "GCE out of resources"]),
    ("image_pull_backoff", FailureKind.IMAGE_PULL, True, ["ImagePullBackOff", "vllm/vllm-openai:v9.9.9"]),
    ("crash_loop_backoff", FailureKind.CRASH_LOOP, True, ["exit code 1", "3 restarts"]),
    ("missing_secret", FailureKind.CONFIG_ERROR, True, ['secret "hf-token" not found']),
    ("evicted_ephemeral_storage", FailureKind.EVICTED, True, ["ephemeral-storage"]),
]


def classify(name: str, with_logs: bool = True):
    fixture = load_fixture(name)
    return classify_failure(fixture["pods"], fixture["events"], fixture["logs"] if with_logs else None)


@pytest.mark.parametrize(("name", "kind", "fatal", "words"), CASES)
def test_classifies_recorded_failures(name: str, kind: FailureKind, fatal: bool, words: list[str]):
    reason = classify(name)
    assert reason is not None
    assert reason.kind == kind
    assert reason.fatal is fatal
    for word in words:
        assert word in reason.message, f"{word!r} not in {reason.message!r}"
    assert reason.pod == load_fixture(name)["pods"][0]["metadata"]["name"]
    assert reason.summary().startswith(f"{kind.value}: ")


def test_starting_server_is_not_a_failure():
    assert classify("starting") is None


def test_oom_wins_over_the_crash_loop_it_causes():
    fixture = load_fixture("oom_killed")
    assert fixture["pods"][0]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert classify("oom_killed").kind == FailureKind.OOM_KILLED


def test_crash_loop_carries_the_last_log_line_with_tokens_redacted():
    reason = classify("crash_loop_backoff")
    assert reason.container == "server"
    assert reason.log_line.startswith("ValueError: Cannot find the config file for awq")
    assert "hf_AbCdEf" not in reason.summary()
    assert "hf_***" in reason.summary()
    assert classify("crash_loop_backoff", with_logs=False).log_line is None


def test_events_alone_still_explain_a_pull_failure():
    fixture = load_fixture("image_pull_backoff")
    reason = classify_failure([], fixture["events"])
    assert reason.kind == FailureKind.IMAGE_PULL
    assert "not found" in reason.message


def test_redact_hides_hub_tokens_only():
    assert redact("token=hf_0123456789abcdefABCDEF ok") == "token=hf_*** ok"
    assert redact("hf_transfer enabled") == "hf_transfer enabled"


SELECTOR = "servesweep.dev/deployment-id=llama3-8b-vllm-b64"


def wait(apps: FakeApps, core: FakeCore, clock: FakeClock, timeout_s: float = 60.0):
    return wait_until_ready(apps, core, namespace="servesweep", name="ss-llama3-8b-vllm-b64",
                            label_selector=SELECTOR, timeout_s=timeout_s, poll_s=5.0, clock=clock, sleep=clock.sleep)


def test_waits_until_ready():
    clock = FakeClock()
    result = wait(FakeApps(ready_after=3), FakeCore(load_fixture("starting")), clock)
    assert result.ready and result.failure is None
    assert result.seconds == 15.0
    assert clock.sleeps == [5.0, 5.0, 5.0]


def test_gives_up_early_on_a_fatal_reason_and_fetches_the_log():
    clock = FakeClock()
    core = FakeCore(load_fixture("crash_loop_backoff"))
    result = wait(FakeApps(ready_after=None), core, clock)
    assert not result.ready
    assert result.failure.kind == FailureKind.CRASH_LOOP
    assert result.failure.log_line.startswith("ValueError")
    assert clock.sleeps == []  # no waiting once the server is known broken
    assert ("get", "pods/log", "ss-qwen-sglang-awq-b32-7b8d9c5f6-p3l9s") in core.calls


def test_log_errors_do_not_hide_the_reason():
    core = FakeCore(load_fixture("crash_loop_backoff"), log_error=api_error(403))
    result = wait(FakeApps(ready_after=None), core, FakeClock())
    assert result.failure.kind == FailureKind.CRASH_LOOP and result.failure.log_line is None


def test_times_out_with_the_pending_reason():
    clock = FakeClock()
    result = wait(FakeApps(ready_after=None), FakeCore(load_fixture("unschedulable_insufficient_gpu")), clock, 30.0)
    assert not result.ready
    assert result.failure.kind == FailureKind.UNSCHEDULABLE
    assert "still after 30s" in result.failure.message
    assert result.seconds == 30.0


def test_times_out_as_no_capacity_when_the_autoscaler_finds_no_machines():
    """Without queued provisioning, GCP's stockout is not fatal (the autoscaler keeps trying), so the server's
    startup timeout bounds the wait, and what it ends in says NoCapacity, not a plain Unschedulable."""
    clock = FakeClock()
    result = wait(FakeApps(ready_after=None), FakeCore(load_fixture("no_capacity_stockout")), clock, 30.0)
    assert not result.ready and result.seconds == 30.0
    assert result.failure.kind == FailureKind.NO_CAPACITY
    assert "GCE out of resources" in result.failure.message and "still after 30s" in result.failure.message
    assert clock.sleeps == [5.0] * 6  # waited the whole timeout: capacity may still come


def test_times_out_plainly_when_nothing_is_wrong_but_slow():
    clock = FakeClock()
    result = wait(FakeApps(ready_after=None), FakeCore(load_fixture("starting")), clock, 12.0)
    assert result.failure.kind == FailureKind.TIMEOUT
    assert "ss-llama3-8b-vllm-b4-59f7c8d6b-r7n2c=Running" in result.failure.message
    assert clock.sleeps == [5.0, 5.0, 2.0]  # never sleeps past the deadline


class FlakyApps(FakeApps):
    """The API server answers 503 once, then works."""

    def read_namespaced_deployment(self, name: str, namespace: str):
        if self.reads == 0:
            self.reads += 1
            raise api_error(503)
        return super().read_namespaced_deployment(name, namespace)


def test_api_server_hiccups_are_polled_through_but_other_errors_raise():
    result = wait(FlakyApps(ready_after=1), FakeCore(load_fixture("starting")), FakeClock())
    assert result.ready

    class Forbidden(FakeApps):
        def read_namespaced_deployment(self, name: str, namespace: str):
            raise api_error(403)

    with pytest.raises(ApiException, match="Forbidden"):
        wait(Forbidden(), FakeCore(load_fixture("starting")), FakeClock())
