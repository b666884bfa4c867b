"""Exit codes of `servesweep run` (servesweep.outcome): what a run measured decides them, after the lake is written."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import pipelines.local
from components.write_lake import write_lake
from servesweep.cli import app
from servesweep.lake.query import query
from servesweep.lake.store import to_table
from servesweep.outcome import BAD_INPUT, CRASH, NOTHING_MEASURED, OK, PARTIAL, Outcome, run_outcome


def _points(statuses: list[str]) -> list[dict]:
    return [{"run_id": "r", "point_id": f"p{i}", "deployment_id": "cc", "source": "measured", "status": status,
             "batch_size": i + 1, "failure_reason": "boom" if status == "failed" else None}
            for i, status in enumerate(statuses)]


def test_outcome_codes_and_messages():
    assert run_outcome(_points(["ok", "partial"])) == Outcome(total=2)
    assert Outcome(total=2).code == OK and Outcome(total=2).message == "all 2 points measured"
    partial = run_outcome(_points(["ok", "failed", "failed"]))
    assert partial.code == PARTIAL and partial.message == "2 of 3 points failed: boom (p1, p2)"
    nothing = run_outcome(_points(["failed"]) + [{"point_id": "x", "source": "predicted", "status": "ok"}])
    assert nothing.code == NOTHING_MEASURED and nothing.message == "1 of 1 points failed: boom (p0)"
    assert Outcome(total=0).code == NOTHING_MEASURED


def _spec_file(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "cli", "run_id": "cli-run", "lake_uri": str(tmp_path / "lake"),
                                    "sweep": {"batch_sizes": [1, 2], "requests_per_point": 2}, **fields}))
    return path


@pytest.mark.parametrize(("statuses", "code", "says"), [
    (["ok", "partial"], OK, None),
    (["ok", "failed"], PARTIAL, "1 of 2 points failed: boom (p1)"),
    (["failed", "failed"], NOTHING_MEASURED, "2 of 2 points failed: boom (p0, p1)"),
])
def test_the_lake_decides_the_exit_code(tmp_path, monkeypatch, statuses, code, says):
    """The pipeline stood in for by what it leaves: a lake with the run's points."""
    def pipeline(spec, pipeline_root, verbose=False):
        write_lake(spec.lake_uri, spec.run_id, {"points": to_table("points", [
            dict(p, run_id=spec.run_id) for p in _points(statuses)])})
        return spec.lake_uri

    monkeypatch.setattr(pipelines.local, "run_locally", pipeline)
    result = CliRunner().invoke(app, ["run", str(_spec_file(tmp_path)), "--pipeline-root", str(tmp_path / "kfp")])
    assert result.exit_code == code, result.output
    if says:
        assert says in result.output
    else:
        assert "points failed" not in result.output


def test_a_crash_exits_1_and_a_bad_spec_2(tmp_path, monkeypatch):
    def pipeline(spec, pipeline_root, verbose=False):
        raise pipelines.local.PipelineFailed("Task 'sweep' finished with status FAILURE")

    monkeypatch.setattr(pipelines.local, "run_locally", pipeline)
    crashed = CliRunner().invoke(app, ["run", str(_spec_file(tmp_path))])
    assert crashed.exit_code == CRASH and "finished with status FAILURE" in crashed.output
    bad = CliRunner().invoke(app, ["run", str(_spec_file(tmp_path, sweep={"batch_sizes": [0]}))])
    assert bad.exit_code == BAD_INPUT and "batch sizes must be >= 1" in bad.output


def test_a_server_kind_that_cannot_run_locally_exits_4_with_the_reason(tmp_path, monkeypatch):
    """The real local pipeline (no server can start): every point fails, the lake says so, the run exits 4
    and leaves no server state directory behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    spec = _spec_file(tmp_path, server={"kind": "tgi"})
    result = CliRunner().invoke(app, ["run", str(spec), "--pipeline-root", str(tmp_path / "kfp")])
    assert result.exit_code == NOTHING_MEASURED, result.output
    assert "2 of 2 points failed: server start: server kind 'tgi' has no local launcher" in " ".join(
        result.output.split())
    points = query(str(tmp_path / "lake"), "select status from points where source = 'measured'").to_pylist()
    assert points == [{"status": "failed"}] * 2  # written before the run failed
    assert list((tmp_path / "tmp").iterdir()) == []


def test_salvage_exits_like_the_run_it_publishes(tmp_path, monkeypatch):
    """A cut-short run's points "not run" are failed points: salvage says so and exits 3, as `run` would."""
    import pipelines.salvage

    lake = str(tmp_path / "lake")

    def salvage(run_dir, lake_uri=None):
        points = [dict(p, run_id="cut") for p in _points(["ok", "failed"])]
        return lake, "cut", write_lake(lake, "cut", {"points": to_table("points", points)})

    monkeypatch.setattr(pipelines.salvage, "salvage", salvage)
    result = CliRunner().invoke(app, ["salvage", str(tmp_path)])
    assert result.exit_code == PARTIAL, result.output
    assert "1 of 2 points failed: boom (p1)" in result.output
