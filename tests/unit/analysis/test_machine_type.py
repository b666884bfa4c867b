"""Which machine type? From the planner and the catalog: fit by the 80 % weights rule, tensor parallel where one
GPU is not enough, measured throughput where the lake has it, predicted otherwise, cost per million tokens."""

from __future__ import annotations

import pytest

from servesweep.analysis.machines import machine_series, weight_dtype_of  # noqa: E402
from servesweep.analysis.models import Question, Status  # noqa: E402
from servesweep.analysis.report import build_report, render_markdown  # noqa: E402
from servesweep.catalog import load_catalog  # noqa: E402
from servesweep.spec import SLOSpec  # noqa: E402
from tests.support.analysis_lake import point, write_points

SLO = SLOSpec(ttft_p99_ms=2000, tpot_p99_ms=100)


@pytest.fixture
def lake_70b(tmp_path):
    """llama3-70b bf16 measured on 4 H100s (tensor parallel 4): 1024 prompt / 256 output tokens."""
    lake = str(tmp_path / "lake")
    rows = [point("h100x4", "nvidia-h100-80gb", b, t, ttft, tpot, model="llama3-70b", model_preset="llama3-70b",
                  model_dtype="bfloat16", accelerator_count=4)
            for b, t, ttft, tpot in [(1, 40, 200, 25), (8, 280, 400, 28), (32, 900, 900, 35)]]
    write_points(lake, rows)
    return lake


def test_every_catalogued_series_is_sized_by_the_80_percent_rule(lake_70b):
    report = build_report(lake_70b, [], SLO, "nvidia-h100-80gb")
    options = {o.accelerator: o for o in report.machine_options}
    catalog = load_catalog()
    assert set(options) == {name for name in catalog.accelerators if name != "cpu"}
    for option in options.values():
        assert option.weight_dtype == "bf16"
        if option.fits:  # weights at most 80 % of each GPU, so at least 20 % is left for the KV cache
            assert option.weights_per_gpu_gb <= option.weight_limit_gb + 1e-9
            assert option.kv_share >= 0.2 - 1e-9
            assert option.max_sequences >= 1
            assert option.cost_per_hour == pytest.approx(catalog.hourly_cost(option.accelerator, option.gpus)) \
                or option.source == "measured"
    # 140 GB of bf16 weights: 4 H100s (35 GB each <= 64 GB), 8 L4s on a g2-standard-96 (17.5 GB <= 19.2 GB).
    assert (options["nvidia-h100-80gb"].gpus, options["nvidia-h100-80gb"].source) == (4, "measured")
    assert options["nvidia-h100-80gb"].output_token_throughput == 900
    assert (options["nvidia-l4"].gpus, options["nvidia-l4"].machine_type, options["nvidia-l4"].series) == (
        8, "g2-standard-96", "G2")
    assert options["nvidia-l4"].source == "predicted"
    assert options["nvidia-h200-141gb"].gpus == 2 and options["nvidia-h200-141gb"].series == "A3 Ultra"
    assert options["nvidia-tesla-a100"].series == "A2" and options["nvidia-a100-80gb"].series == "A2 ultra"


def test_the_answer_names_the_cheapest_machine_and_says_whether_it_was_measured(lake_70b):
    report = build_report(lake_70b, [], SLO, "nvidia-h100-80gb")
    (answer,) = [r for r in report.recommendations if r.question == Question.MACHINE]
    assert answer.status == Status.ANSWERED
    priced = sorted((o for o in report.machine_options if o.fits and o.meets_slo
                     and o.usd_per_million_output_tokens is not None),
                    key=lambda o: o.usd_per_million_output_tokens)
    assert answer.answer.startswith(f"{priced[0].series} {priced[0].machine_type}")
    assert f"{priced[0].usd_per_million_output_tokens:.3g}" in answer.answer
    assert ("a prediction, not a measurement" in answer.answer) == (priced[0].source == "predicted")
    markdown = render_markdown(report)
    assert "## Machine types" in markdown and "g2-standard-96" in markdown


def test_a_model_the_planner_does_not_know_is_answered_from_measurements_only(tmp_path):
    lake = str(tmp_path / "lake")
    write_points(lake, [point("r", "nvidia-l4", b, t, 100, 20, model="mystery", model_preset="mystery-arch")
                        for b, t in [(1, 30), (4, 100)]])
    report = build_report(lake, [], SLO, "nvidia-l4")
    assert [o.source for o in report.machine_options] == ["measured"]
    assert any("not in the planner's models" in note for note in report.notes)


def test_helpers():
    assert machine_series("a3-megagpu-8g") == "A3 Mega" and machine_series("a2-ultragpu-1g") == "A2 ultra"
    assert weight_dtype_of("w4a16", "bfloat16") == "int4" and weight_dtype_of("fp8", None) == "fp8"
    assert weight_dtype_of("none", "bfloat16") == "bf16"
