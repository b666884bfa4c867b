"""Argo retry policies and step deadlines: retries that can fire (no backoff.maxDuration), infrastructure losses
retried everywhere, a sweep's own failure never, and every step bounded by an activeDeadlineSeconds."""

from __future__ import annotations

import re

import pytest
import yaml

from pipelines.argo_workflow import POD_START_S, build_workflow
from servesweep.spec import load_spec
from tests.support.paths import REPO

GKE_SPEC = REPO / "specs" / "gke.yaml"
PREEMPTED = "Pod was terminated in response to imminent node shutdown."


def _templates(spec=None) -> dict[str, dict]:
    workflow = yaml.safe_load(build_workflow(spec or load_spec(GKE_SPEC)).to_yaml())
    return {t["name"]: t for t in workflow["spec"]["templates"] if "container" in t}


def _deadline(template: dict) -> int:
    """activeDeadlineSeconds, written as a string (Argo's schema types int-or-string fields as strings)."""
    return int(template.get("activeDeadlineSeconds", "0"))


def _retries(expression: str, status: str, exit_code: int, message: str = "") -> bool:
    """Argo's retry expression (expr-lang) for the operators these use, evaluated over one lastRetry."""
    python = re.sub(r"(\S+) matches '([^']*)'", r"bool(re.search(r'\2', \1))", expression)
    python = python.replace("||", " or ").replace("&&", " and ").replace("asInt(", "int(")
    last = {"lastRetry.status": repr(status), "lastRetry.exitCode": repr(str(exit_code)),
            "lastRetry.message": repr(message)}
    for name, value in last.items():
        python = python.replace(name, value)
    return bool(eval(python, {"re": re}))  # noqa: S307 - our own expression, over literals


def test_no_retry_is_cut_short_by_max_duration():
    for name, template in _templates().items():
        backoff = (template.get("retryStrategy") or {}).get("backoff", {})
        assert "maxDuration" not in backoff, name


@pytest.mark.parametrize(("step", "status", "exit_code", "message", "retried"), [
    ("sweep", "Failed", 1, "Error (exit code 1)", False),  # a failed benchmark run is a result
    ("sweep", "Failed", 137, PREEMPTED, True),
    ("sweep", "Error", 0, "pod deleted", True),
    ("deploy-server", "Failed", 1, "Error (exit code 1)", True),  # an API hiccup
    ("deploy-server", "Failed", 2, "Error (exit code 2)", False),  # a bad spec
    ("provision", "Failed", 2, PREEMPTED, True),
    ("collect-metrics", "Failed", 1, "Error (exit code 1)", False),
    ("teardown-all", "Failed", 1, "", True),
])
def test_retry_policy_per_step(step, status, exit_code, message, retried):
    strategy = _templates()[step]["retryStrategy"]
    assert strategy["retryPolicy"] == "Always"
    assert _retries(strategy["expression"], status, exit_code, message) is retried


def test_check_points_verdict_is_never_retried():
    assert "retryStrategy" not in _templates()["check-points"]


def test_every_step_has_a_deadline_from_the_spec():
    spec = load_spec(GKE_SPEC)
    templates = _templates(spec)
    assert all(_deadline(t) > 0 for t in templates.values())
    assert _deadline(templates["deploy-server"]) == int(spec.server.startup_timeout_s) + POD_START_S
    slower = spec.model_copy(update={"sweep": spec.sweep.model_copy(
        update={"request_timeout_s": spec.sweep.request_timeout_s * 2})})
    base = _deadline(templates["sweep"]) - POD_START_S
    assert _deadline(_templates(slower)["sweep"]) - POD_START_S == 2 * base


def test_deploy_deadline_adds_the_queued_provisioning_wait():
    from pipelines.argo_workflow import POD_START_S, step_deadlines
    from servesweep.spec import load_spec
    from tests.support.paths import REPO

    spec = load_spec(REPO / "specs" / "gke.yaml")
    plain = step_deadlines(spec)["deploy-server"]
    assert plain == int(spec.server.startup_timeout_s) + POD_START_S
    data = spec.model_dump(mode="json")
    data["gke"] |= {"provisioning": "node_pool", "capacity": {"kinds": ["flex_start"], "queued": {"timeout_s": 7200}}}
    queued = type(spec).model_validate(data)
    assert step_deadlines(queued)["deploy-server"] == plain + 7200
