"""The report: recommendations with their numbers, charts, Markdown/HTML files and the KFP report step."""

import base64
import re
from pathlib import Path

import pytest
from matplotlib.image import imread

from servesweep.analysis.models import Question, Report, Status
from servesweep.analysis.report import ReportError, build_report, headline_metrics, render_html, write_report
from servesweep.spec import BenchmarkSpec, SLOSpec
from tests.support.analysis_lake import fleet_rows, point, round_price_catalog, spine_rows, write_points
from tests.support.paths import REPO

SLO = SLOSpec(ttft_p99_ms=500, tpot_p99_ms=50)
SPINE_RUN = "local-smoke-20261125T112434Z"


def _answers(report: Report) -> dict[Question, object]:
    assert len({item.question for item in report.recommendations}) == len(report.recommendations)
    return {item.question: item for item in report.recommendations}


def _figure(recommendation, label: str) -> float | None:
    return next(f.value for f in recommendation.figures if f.label == label)


@pytest.fixture
def fleet_lake(tmp_path):
    lake = str(tmp_path / "lake")
    write_points(lake, fleet_rows())
    return lake


@pytest.fixture
def catalog(tmp_path):
    return round_price_catalog(tmp_path)


def test_recommendations_across_accelerators_and_quantizations(fleet_lake, catalog):
    report = build_report(fleet_lake, [], SLO, "nvidia-l4", catalog)
    assert report.run_ids == ["a100", "a100-int8", "cpu-slow", "l4"]
    answers = _answers(report)
    assert {item.scope for item in report.recommendations} == {"llama3-8b 1024/256 measured"}

    gpu = answers[Question.ACCELERATOR]
    assert gpu.status == Status.ANSWERED
    # A100: 900 tok/s at $2/h = $0.617/M; 1,620,000 / 1,296,000 tokens/$ = 1.25x the L4's best within the SLO.
    assert gpu.answer.startswith("nvidia-tesla-a100 x1 (none, batch 16): $0.617 per million output tokens")
    assert "1.25x the tokens per dollar of nvidia-l4" in gpu.answer
    assert "next: nvidia-l4 x1 at $0.772 per million" in gpu.answer and "cpu x1 cannot meet the SLO" in gpu.answer
    assert _figure(gpu, "nvidia-l4 x1: cost at ideal batch") == pytest.approx(0.5e6 / (180 * 3600))
    assert _figure(gpu, "cpu x1: cost at ideal batch") is None

    quantize = answers[Question.QUANTIZE]
    assert quantize.status == Status.ANSWERED
    assert quantize.answer.startswith("do not quantize on nvidia-tesla-a100 x1: none at its ideal batch 16: $0.617 "
                                      "per million output tokens, against $1.98 per million output tokens for int8 "
                                      "at its ideal batch 4")
    assert "No accuracy data for these variants" in quantize.answer
    assert _figure(quantize, "int8: ideal batch size") == 4

    batch = answers[Question.BATCH_SIZE]
    assert batch.status == Status.ANSWERED
    assert batch.answer.startswith("batch 16 on " + "nvidia-tesla-a100 x1 llama3-8b none vllm 1024/256")
    assert "tied with batch 32" in batch.answer
    assert _figure(batch, "ideal batch size") == 16

    workload = answers[Question.WORKLOAD]
    assert workload.status == Status.ANSWERED and workload.answer.startswith("decode-heavy")

    assert report.headline.meets_slo and report.headline.ideal_batch_size == 16
    assert headline_metrics(report) == {
        "meets_slo": 1.0, "best_output_tokens_per_s_within_slo": 900.0, "ideal_batch_size": 16.0,
        "usd_per_million_output_tokens": pytest.approx(2e6 / (900 * 3600)),
        "output_tokens_per_dollar": pytest.approx(1_620_000), "max_output_tokens_per_s": 900.0,
    }
    assert any("1 measured point(s) did not complete" in note and "server out of memory" in note
               for note in report.notes)
    assert {row.source for row in report.ideal_batches} == {"measured", "predicted"}


def test_quantized_only_winner_when_unquantized_misses_the_slo(tmp_path, catalog):
    lake = str(tmp_path / "lake")
    write_points(lake, [
        point("fp16", "nvidia-l4", 1, 30, 900, 60), point("fp16", "nvidia-l4", 2, 50, 1200, 70),
        point("fp8", "nvidia-l4", 1, 45, 400, 30, quantization="fp8"),
        point("fp8", "nvidia-l4", 2, 80, 450, 35, quantization="fp8"),
    ])
    answers = _answers(build_report(lake, [], SLO, "nvidia-l4", catalog))
    quantize = answers[Question.QUANTIZE]
    assert quantize.status == Status.ANSWERED
    assert quantize.answer.startswith("quantize to fp8 on nvidia-l4 x1: only fp8 meets the SLO (none: none of the 2")


def test_slo_never_met_and_questions_the_data_cannot_answer(fleet_lake, catalog):
    report = build_report(fleet_lake, ["cpu-slow"], SLO, "nvidia-l4", catalog)
    answers = _answers(report)
    assert answers[Question.ACCELERATOR].status == Status.NOT_COVERED
    assert answers[Question.ACCELERATOR].answer.startswith("only cpu x1 was measured")
    assert answers[Question.QUANTIZE].status == Status.NOT_COVERED
    batch = answers[Question.BATCH_SIZE]
    assert batch.status == Status.SLO_NOT_MET
    assert "even batch 1 misses: ttft_p99 5000.0 > 500.0 ms" in batch.answer
    assert not report.headline.meets_slo and report.headline.ideal_batch_size is None
    assert report.headline.summary.startswith("no measured config meets the SLO")
    assert headline_metrics(report) == {"meets_slo": 0.0, "max_output_tokens_per_s": 6.0}
    assert any("baseline nvidia-l4 is not in these runs" in note for note in report.notes)


def test_one_batch_size_and_predictions_only_are_not_covered(tmp_path, catalog):
    lake = str(tmp_path / "lake")
    write_points(lake, [point("single", "nvidia-l4", 4, 100, 100, 20),
                        point("plan", "nvidia-l4", 4, 100, 100, 20, source="predicted")])
    single = _answers(build_report(lake, ["single"], SLO, "nvidia-l4", catalog))[Question.BATCH_SIZE]
    assert single.status == Status.NOT_COVERED and "measured at one batch size only" in single.answer
    planned = build_report(lake, ["plan"], SLO, "nvidia-l4", catalog)
    assert {item.status for item in planned.recommendations} == {Status.NOT_COVERED}
    assert len(planned.recommendations) == len(Question)
    assert planned.ideal_batches[0].source == "predicted"


def test_mixed_quantizations_on_different_accelerators_are_not_compared(tmp_path, catalog):
    lake = str(tmp_path / "lake")
    write_points(lake, [point("l4", "nvidia-l4", 1, 30, 100, 20),
                        point("a100", "nvidia-tesla-a100", 1, 60, 50, 10, quantization="int8")])
    quantize = _answers(build_report(lake, [], SLO, "nvidia-l4", catalog))[Question.QUANTIZE]
    assert quantize.status == Status.NOT_COVERED and "different accelerators" in quantize.answer


def test_bad_requests_are_refused(fleet_lake, catalog):
    with pytest.raises(ReportError, match="not in lake"):
        build_report(fleet_lake, ["nope"], SLO, "nvidia-l4", catalog)
    with pytest.raises(ReportError, match="unknown baseline accelerator"):
        build_report(fleet_lake, [], SLO, "nvidia-l5", catalog)


def test_charts_and_files(fleet_lake, catalog, tmp_path):
    report = build_report(fleet_lake, [], SLO, "nvidia-l4", catalog)
    paths = write_report(report, tmp_path / "out")
    charts = {chart.name: chart for chart in paths.charts}
    # 4 measured configs (the predicted one is drawn only when nothing was measured): a line each, p50 and p99
    # of TTFT and TPOT each, a scatter each plus the frontier; bar charts have a bar group per config.
    expected_series = {"throughput_vs_batch": 4, "latency_vs_batch": 4 * 4, "throughput_per_dollar": 2,
                       "prefill_vs_decode": 3, "pareto_frontier": 4 + 1}
    assert {name: chart.series_count for name, chart in charts.items()} == expected_series
    assert len(charts["throughput_per_dollar"].categories) == len(charts["prefill_vs_decode"].categories) == 4
    assert charts["throughput_per_dollar"].series_labels == ["best at any batch size", "within the SLO (ideal batch)"]
    assert "normalised to nvidia-l4" in charts["throughput_per_dollar"].title
    for chart in paths.charts:
        image = imread(chart.path)
        height, width = image.shape[:2]
        assert height >= 300 and width >= 500, chart.name
        assert image[..., :3].std() > 0.05, f"{chart.name} is blank"
    html = (tmp_path / "out" / "report.html").read_text()
    embedded = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert sorted(base64.b64decode(data) for data in embedded) == sorted(
        Path(chart.path).read_bytes() for chart in paths.charts)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "](charts/throughput_vs_batch.png)" in markdown and "[answered] nvidia-tesla-a100 x1" in markdown
    assert Report.model_validate_json((tmp_path / "out" / "report.json").read_text()) == report


def test_cost_chart_without_the_baseline_is_not_normalised(fleet_lake, catalog, tmp_path):
    report = build_report(fleet_lake, ["cpu-slow"], SLO, "nvidia-l4", catalog)
    charts = {chart.name: chart for chart in write_report(report, tmp_path / "out").charts}
    assert "not normalised" in charts["throughput_per_dollar"].title
    assert charts["throughput_vs_batch"].series_count == 1


def test_html_escapes_what_it_renders(fleet_lake, catalog):
    report = build_report(fleet_lake, [], SLO, "nvidia-l4", catalog)
    tampered = report.model_copy(update={"notes": ["<script>alert(1)</script>"]})
    assert "<script>alert" not in render_html(tampered) and "&lt;script&gt;" in render_html(tampered)


def test_kfp_report_step_on_the_spine_run(tmp_path):
    from kfp.dsl import HTML, Markdown, Metrics

    from pipelines.kfp_pipeline import report as report_component

    lake = str(tmp_path / "lake")
    write_points(lake, spine_rows())
    spec = BenchmarkSpec(run_id=SPINE_RUN, lake_uri=lake, slo=SLOSpec(ttft_p99_ms=30))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    html = HTML(uri=str(tmp_path / "kfp" / "report.html"))
    markdown = Markdown(uri=str(tmp_path / "kfp" / "report.md"))
    report_component.python_func(spec_json=spec.model_dump_json(), lake_uri=lake, baseline_accelerator="nvidia-l4",
                                 metrics=metrics, html=html, markdown=markdown)
    # The real run's p99 TTFT: 21.3, 17.3, 22.3 and 51.3 ms at batches 1, 2, 4, 8: under 30 ms, batch 4 is fastest.
    assert metrics.metadata["meets_slo"] == 1.0 and metrics.metadata["ideal_batch_size"] == 4.0
    assert metrics.metadata["best_output_tokens_per_s_within_slo"] == pytest.approx(1433.72, abs=0.01)
    assert metrics.metadata["usd_per_million_output_tokens"] == pytest.approx(0.388472e6 / (1433.7247 * 3600))
    page = (tmp_path / "kfp" / "report.html").read_text()
    assert page.count("<img alt=") == 5 and "which batch size?" in page and "Interactive charts" in page
    assert "[answered] batch 4 on cpu x1 tiny-llama" in (tmp_path / "kfp" / "report.md").read_text()


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task that uses custom")
def test_report_step_runs_in_the_kfp_local_runner(tmp_path, monkeypatch):
    """The real KFP executor: its Metrics/HTML/Markdown outputs, as the KFP run page would get them."""
    from kfp import local

    from pipelines.kfp_pipeline import report as report_component

    lake = str(tmp_path / "lake")
    write_points(lake, spine_rows())
    spec = BenchmarkSpec(run_id=SPINE_RUN, lake_uri=lake)
    # The task runs from tmp_path: the checkout under test, not whatever the venv installed, must be on its path.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.chdir(tmp_path)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    task = report_component(spec_json=spec.model_dump_json(), lake_uri=lake, baseline_accelerator="nvidia-l4")
    # No SLO: the ideal batch is the fastest measured one (batch 8 of the real run).
    assert task.outputs["metrics"].metadata["ideal_batch_size"] == 8.0
    with open(task.outputs["html"].path) as page:
        assert page.read().count("<img alt=") == 5
    with open(task.outputs["markdown"].path) as summary:
        assert "no SLO set: batch 8 has the highest output throughput" in summary.read()


def test_the_run_s_report_hint_judges_by_the_spec_s_slo(tmp_path):
    """`servesweep run` ends with a report command; its flags carry the spec's SLO into the report."""
    import shlex

    from typer.testing import CliRunner

    from servesweep.cli import _slo_flags, app

    flags = _slo_flags(SLOSpec(ttft_p99_ms=30, e2e_p99_ms=2500.5))
    assert flags == " --slo-ttft-ms 30 --slo-e2e-ms 2500.5" and _slo_flags(SLOSpec()) == ""
    lake = str(tmp_path / "lake")
    write_points(lake, spine_rows())
    result = CliRunner().invoke(app, ["report", SPINE_RUN, "--lake", lake, "--out", str(tmp_path / "report"),
                                      *shlex.split(flags)])
    assert result.exit_code == 0, result.output
    # Under 30 ms p99 TTFT the spine run's fastest batch is 4 (see the KFP report step's test above).
    assert "batch 4 on cpu x1 tiny-llama" in " ".join(result.output.split())
