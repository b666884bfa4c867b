"""The accuracy step's rules without a server: when it scores, the baseline lookup and the threshold flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from components.accuracy import score_accuracy, scores_this_deployment
from components.write_lake import with_accuracy, write_lake
from servesweep.accuracy import Interval
from servesweep.accuracy_scoring import Score, comparison, find_baseline
from servesweep.lake.store import read_table, to_table
from servesweep.platform.types import Endpoint
from servesweep.spec import SpecError, parse_spec
from servesweep.sweep_plan import plan_deployments

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def _spec(**fields):
    return parse_spec({"model": {"preset": "tiny-trained", "weights": "trained"}, "server": {"max_model_len": 256},
                       "sweep": {"batch_sizes": [1, 2], "modes": ["client_concurrency", "server_max_seqs"],
                                 "requests_per_point": 4},
                       **fields})


def _row(run_id, value, quantization="none", model="tiny-llama", metric="exact_match", items=256, hours=0):
    return {"run_id": run_id, "deployment_id": "d", "model": model, "quantization": quantization, "task": "t",
            "metric": metric, "higher_is_better": metric == "exact_match", "value": value, "ci_low": value - 0.01,
            "ci_high": value + 0.01, "items": items, "tool": "x", "measured_at": NOW + timedelta(hours=hours)}


def _score(value, metric="exact_match", half=0.01):
    return Score(task="t", metric=metric, higher_is_better=metric == "exact_match",
                 value=Interval(value=value, low=value - half, high=value + half), items=256, tokens=None, tool="x",
                 tool_version="1")


def test_accuracy_is_on_for_trained_weights_only_unless_asked():
    assert _spec().accuracy_enabled
    assert not parse_spec({}).accuracy_enabled  # random weights score nothing meaningful
    assert parse_spec({"accuracy": {"enabled": True}}).accuracy_enabled
    assert not _spec(accuracy={"enabled": False}).accuracy_enabled


def test_bad_accuracy_settings_are_one_line_errors():
    with pytest.raises(SpecError, match="accuracy.tasks: tasks repeat an entry"):
        _spec(accuracy={"tasks": ["perplexity", "perplexity"]})
    with pytest.raises(SpecError, match="accuracy.max_exact_match_drop"):
        _spec(accuracy={"max_exact_match_drop": 2})
    with pytest.raises(SpecError, match="accuracy.bogus: unknown field"):
        _spec(accuracy={"bogus": 1})


def test_only_the_first_deployment_is_scored():
    spec = _spec()
    first, *others = plan_deployments(spec)
    assert others and scores_this_deployment(spec, first)
    assert not any(scores_this_deployment(spec, d) for d in others)
    assert not scores_this_deployment(parse_spec({}), plan_deployments(parse_spec({}))[0])


def test_a_failed_server_or_another_deployment_gives_no_rows():
    spec = _spec()
    first, second = plan_deployments(spec)[:2]
    failed = Endpoint(deployment_id=first.deployment_id, max_num_seqs=1, error="did not start")
    assert len(score_accuracy(spec, failed, first)) == 0
    assert len(score_accuracy(spec, Endpoint(deployment_id=second.deployment_id, max_num_seqs=2), second)) == 0


def test_the_baseline_is_the_newest_unquantized_run_of_the_same_model_task_metric_and_items(tmp_path):
    lake = str(tmp_path / "lake")
    runs = {"old": [_row("old", 0.90, hours=0)], "new": [_row("new", 0.95, hours=1)],
            "quant": [_row("quant", 0.99, quantization="w4a16", hours=2)],
            "other": [_row("other", 0.5, model="other", hours=3), _row("other", 1.1, metric="perplexity", hours=3),
                      _row("other", 0.4, items=32, hours=3)]}
    for run_id, rows in runs.items():
        write_lake(lake, run_id, {"accuracy": to_table("accuracy", rows)})
    found = find_baseline(lake, "tiny-llama", "t", "exact_match", 256)
    assert found is not None and found["run_id"] == "new" and found["value"] == 0.95
    assert find_baseline(lake, "tiny-llama", "t", "exact_match", 100) is None
    assert find_baseline(str(tmp_path / "no-lake"), "tiny-llama", "t", "exact_match", 256) is None


def test_a_variant_worse_than_the_threshold_fails_and_one_within_it_passes():
    baseline = _row("base", 0.95)
    worse = comparison(_score(0.90), baseline, threshold=0.02)  # 5 points lost, 2 allowed
    assert worse["passed"] is False and worse["baseline_run_id"] == "base"
    assert worse["delta"] == pytest.approx(-0.05) and worse["threshold"] == 0.02
    half = (0.01**2 + 0.01**2) ** 0.5
    assert (worse["delta_low"], worse["delta_high"]) == pytest.approx((-0.05 - half, -0.05 + half))
    assert comparison(_score(0.94), baseline, threshold=0.02)["passed"] is True


def test_perplexity_fails_on_a_relative_increase_past_the_threshold():
    baseline = _row("base", 1.20, metric="perplexity")
    assert comparison(_score(1.30, "perplexity"), baseline, threshold=0.05)["passed"] is False  # +8.3 %
    within = comparison(_score(1.25, "perplexity"), baseline, threshold=0.05)  # +4.2 %
    assert within["passed"] is True and within["delta"] == pytest.approx(0.05)


def test_write_lake_takes_the_accuracy_rows_of_every_deployment(tmp_path):
    files = []
    for index, rows in enumerate([[_row("r", 0.9)], []]):
        files.append(tmp_path / f"{index}.parquet")
        import pyarrow.parquet as pq

        pq.write_table(to_table("accuracy", rows), files[-1])
    tables = with_accuracy({}, files)
    write_lake(str(tmp_path / "lake"), "r", tables)
    assert read_table(str(tmp_path / "lake"), "accuracy")["value"].to_pylist() == [0.9]
    assert len(with_accuracy({}, [])["accuracy"]) == 0
