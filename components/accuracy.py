"""Accuracy step: score the deployed server's variant on the held-out split and compare it with the baseline.

It runs inside each deployment, after the sweep and before teardown (scoring next to the sweep's load would
skew both), and scores only the run's first deployment: every deployment serves the same variant, and greedy
answers do not depend on max_num_seqs. A scoring failure is printed and leaves its metric out; it never
fails the step, so the sweep's measurements still reach the lake. The rows are the lake's `accuracy` table.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from servesweep import __version__
from servesweep.accuracy_scoring import (
    Score,
    ScoringError,
    Target,
    comparison,
    find_baseline,
    score_exact_match,
    score_perplexity,
)
from servesweep.heldout import read_split, split_file
from servesweep.lake.schema import SCHEMA_VERSION
from servesweep.lake.store import to_table
from servesweep.platform.types import Endpoint, EndpointAuthError
from servesweep.spec import BenchmarkSpec
from servesweep.sweep_plan import Deployment, plan_deployments


def scores_this_deployment(spec: BenchmarkSpec, deployment: Deployment) -> bool:
    """Whether the step scores here: accuracy on, and the run's first deployment."""
    return spec.accuracy_enabled and plan_deployments(spec)[0].deployment_id == deployment.deployment_id


def score_accuracy(spec: BenchmarkSpec, endpoint: Endpoint, deployment: Deployment) -> pa.Table:
    """The `accuracy` rows of this deployment (none when it is not scored here or its server failed)."""
    if not scores_this_deployment(spec, deployment):
        return to_table("accuracy", [])
    if endpoint.error:
        print(f"accuracy: not scored, the server failed: {endpoint.error}")
        return to_table("accuracy", [])
    try:
        target = Target(endpoint.base_url, endpoint.served_name or spec.model.name, endpoint.request_headers(),
                        spec.accuracy.request_timeout_s)
    except EndpointAuthError as error:
        print(f"accuracy: not scored: {error}")
        return to_table("accuracy", [])
    with tempfile.TemporaryDirectory(prefix="servesweep-accuracy-") as scratch:
        scores = _scores(spec, target, Path(scratch))
    return to_table("accuracy", [_row(spec, endpoint, score) for score in scores])


def _scores(spec: BenchmarkSpec, target: Target, scratch: Path) -> list[Score]:
    digits = spec.model.training.digits
    split = split_file(digits, scratch)
    rows = read_split(split, spec.accuracy.items)
    scores = []
    for task in spec.accuracy.tasks:
        try:
            if task == "perplexity":
                scores.append(score_perplexity(target, rows, f"addition-{digits}-heldout", spec.accuracy.concurrency,
                                               spec.model.seed, __version__))
            else:
                scores.append(score_exact_match(target, split, digits, len(rows), spec.accuracy.concurrency,
                                                spec.model.seed, scratch))
        except ScoringError as error:
            print(f"accuracy: {task} not scored: {error}")
            continue
        score = scores[-1]
        print(f"accuracy {score.task} {score.metric}: {score.value.value:.4f} "
              f"[{score.value.low:.4f}, {score.value.high:.4f}] over {score.items} items")
    return scores


def _row(spec: BenchmarkSpec, endpoint: Endpoint, score: Score) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": spec.run_id, "schema_version": SCHEMA_VERSION, "deployment_id": endpoint.deployment_id,
        "model": spec.model.name, "quantization": spec.quantization, "task": score.task, "metric": score.metric,
        "higher_is_better": score.higher_is_better, "value": score.value.value, "ci_low": score.value.low,
        "ci_high": score.value.high, "items": score.items, "tokens": score.tokens, "tool": score.tool,
        "tool_version": score.tool_version, "measured_at": datetime.now(UTC),
    }
    if spec.quantization == "none":
        return row  # the baseline itself: nothing to compare with
    baseline = find_baseline(spec.lake_uri, spec.model.name, score.task, score.metric, score.items)
    if baseline is None:
        print(f"accuracy {score.metric}: no unquantized baseline of {spec.model.name} in {spec.lake_uri}")
        return row
    threshold = (spec.accuracy.max_exact_match_drop if score.metric == "exact_match"
                 else spec.accuracy.max_perplexity_increase)
    return row | comparison(score, baseline, threshold)
