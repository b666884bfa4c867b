"""Several variants in one `servesweep run`: one spec per variant (baseline first, `<run_id>-<variant>`), run in
sequence, a crash in one not stopping the others, one summary and the worst exit code.

The pipeline run itself is replaced by a stand-in that writes a run's points through the lake writer (or
crashes): the real pipeline per variant is what tests/e2e and `make run SPEC=specs/local-quantize.yaml` run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import pipelines.variants as variants
from pipelines.local import PipelineFailed
from servesweep.cli import app
from servesweep.lake import store
from servesweep.outcome import CRASH, NOTHING_MEASURED, OK, PARTIAL
from servesweep.spec import BenchmarkSpec, parse_spec, variant_run_id
from tests.support.analysis_lake import point


def test_variant_specs_put_the_baseline_first_and_derive_run_ids():
    spec = parse_spec({"run_id": "r", "variants": ["w4a16", "w8a8-int8", "none"]})
    runs = spec.variant_specs()
    assert [(s.quantization, s.run_id, s.variants) for s in runs] == [
        ("none", "r-none", []), ("w4a16", "r-w4a16", []), ("w8a8-int8", "r-w8a8-int8", [])]
    assert parse_spec({"run_id": "r"}).variant_specs()[0].run_id == "r"  # one variant: the spec itself


def test_a_long_derived_run_id_is_cut_to_fit():
    long = "n" * 60 + "-20261203T170951Z"
    assert variant_run_id(long, "w8a8-int8") == "n" * 53 + "-20261203T170951Z-w8a8-int8"
    assert len(variant_run_id(long, "w8a8-int8")) == 80


def _fake_pipeline(outcomes: dict[str, str]):
    """A stand-in for run_locally: per variant 'ok', 'failed' (every point failed) or 'crash'."""
    def run(spec: BenchmarkSpec, pipeline_root) -> str:
        kind = outcomes[spec.quantization]
        if kind == "crash":
            raise PipelineFailed("Pipeline 'servesweep' finished with status FAILURE.\nfull log: x")
        status = "failed" if kind == "failed" else "ok"
        rows = [point(spec.run_id, "cpu", b, 10.0 * b, 10, 5, quantization=spec.quantization, status=status,
                      failure_reason="server out of memory" if status == "failed" else None) for b in (1, 2)]
        runs = [{"run_id": spec.run_id, "spec_hash": "h", "quantization": spec.quantization, "weight_bytes": 100}]
        store.write_run(spec.lake_uri, spec.run_id, {"points": store.to_table("points", rows),
                                                     "runs": store.to_table("runs", runs)})
        return spec.lake_uri
    return run


@pytest.mark.parametrize(("outcomes", "code"), [
    ({"none": "ok", "w4a16": "ok"}, OK),
    ({"none": "ok", "w4a16": "failed"}, PARTIAL),
    ({"none": "failed", "w4a16": "failed"}, NOTHING_MEASURED),
    ({"none": "crash", "w4a16": "ok"}, CRASH),
])
def test_every_variant_runs_and_the_worst_decides_the_exit_code(tmp_path, monkeypatch, outcomes, code):
    monkeypatch.setattr(variants, "run_locally", _fake_pipeline(outcomes))
    spec = parse_spec({"run_id": "r", "variants": ["w4a16", "none"], "lake_uri": str(tmp_path / "lake")})
    lines: list[str] = []
    runs = variants.run_variants(spec, tmp_path / "kfp", lines.append)
    assert [run.run_id for run in runs] == ["r-none", "r-w4a16"]  # the crash did not stop the second variant
    assert variants.overall_code(runs) == code
    assert lines[0] == "variant none: run r-none"
    if outcomes["none"] == "crash":
        assert runs[0].message == "crashed: Pipeline 'servesweep' finished with status FAILURE."
    rows = variants.summary_rows(spec.lake_uri, runs)
    assert [(row["variant"], row["weight bytes"]) for row in rows] == [
        ("none", None if outcomes["none"] == "crash" else 100), ("w4a16", 100)]


def test_the_cli_prints_one_summary_and_exits_with_the_worst_code(tmp_path, monkeypatch):
    monkeypatch.setattr(variants, "run_locally", _fake_pipeline({"none": "ok", "w4a16": "failed"}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"run_id: r\nvariants: [none, w4a16]\nlake_uri: {tmp_path / 'lake'}\n"
                    "sweep: {batch_sizes: [1, 2], requests_per_point: 2}\n")
    result = CliRunner().invoke(app, ["run", str(spec), "--pipeline-root", str(tmp_path / "kfp")])
    assert result.exit_code == PARTIAL, result.output
    assert "variants of r" in result.output and "report: servesweep report r-none r-w4a16" in result.output
    assert "error: w4a16: 2 of 2 points failed: server out of memory" in result.output


def test_a_pipeline_run_takes_one_variant_and_refuses_a_list():
    """The KFP/Argo pipelines measure one variant per run: each variant's parameters resolve to that variant, and
    a spec_yaml still holding `variants` is refused rather than measured as its first variant only."""
    from servesweep.spec import SpecError, spec_from_params, spec_to_params

    spec = parse_spec({"run_id": "r", "variants": ["none", "w4a16"]})
    resolved = [spec_from_params(spec_to_params(v).model_dump()) for v in spec.variant_specs()]
    assert [(s.quantization, s.run_id) for s in resolved] == [("none", "r-none"), ("w4a16", "r-w4a16")]
    with pytest.raises(SpecError, match="a pipeline run measures one variant"):
        spec_from_params(spec_to_params(spec).model_dump())
