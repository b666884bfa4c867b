"""The report's "quantize?" answer follows the guide, rule by rule, on small synthetic lakes: at 8 bits or more
the cheapest variant within the SLO whose accuracy (where measured) is inside the threshold; below 8 bits only
with an accuracy result inside it; a variant past the threshold is flagged and never recommended; without
accuracy data the answer says so. Every number of the answer traces to its rows (tests/support/sentences.py).

Lakes: llama3-8b 1024/256 on one A100 at $2/h (round-price catalog), each variant a run of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from servesweep.analysis.models import Question, Status
from servesweep.analysis.report import build_report, render_markdown
from servesweep.analysis.views import connect
from servesweep.lake import store
from servesweep.spec import SLOSpec
from tests.support.analysis_lake import point, round_price_catalog, write_points
from tests.support.sentences import group_values, unmatched

SLO = SLOSpec(ttft_p99_ms=500, tpot_p99_ms=50)
A100 = "nvidia-tesla-a100"
# Per variant: output tok/s at batches 1, 4, 8 (all within the SLO).
THROUGHPUT = {"none": (60, 200, 400), "w8a8-int8": (80, 280, 600), "w4a16": (90, 320, 800)}
WEIGHT_BYTES = {"none": 16_060_000_000, "w8a8-int8": 8_030_000_000, "w4a16": 5_700_000_000}


def _lake(tmp_path, variants: tuple[str, ...], accuracy: dict[str, tuple[float, float, float, bool]] | None = None,
          weights: bool = True) -> str:
    """One run per variant; `accuracy`: variant -> (delta, delta_low, delta_high, passed) of exact_match against
    the baseline's 0.9, threshold 0.02."""
    lake = str(tmp_path / "lake")
    rows = [point(f"run-{q}", A100, b, t, 100 + 10 * b, 20 + b, quantization=q, model_preset="llama3-8b",
                  model_dtype="bfloat16")
            for q in variants for b, t in zip((1, 4, 8), THROUGHPUT[q], strict=True)]
    write_points(lake, rows)
    for q in variants:
        tables = {"points": store.to_table("points", [r for r in rows if r["quantization"] == q]),
                  "runs": store.to_table("runs", [{"run_id": f"run-{q}", "spec_hash": q, "quantization": q,
                                                   "weight_bytes": WEIGHT_BYTES[q] if weights else 0,
                                                   "quantize_how": "llmcompressor" if q != "none" else "as-is"}])}
        if accuracy and q in accuracy or accuracy and q == "none":
            tables["accuracy"] = store.to_table("accuracy", [_accuracy_row(q, accuracy.get(q))])
        store.write_run(lake, f"run-{q}", tables)
    return lake


def _accuracy_row(q: str, compared: tuple[float, float, float, bool] | None) -> dict[str, object]:
    base = {"run_id": f"run-{q}", "deployment_id": "d", "model": "llama3-8b", "quantization": q,
            "task": "addition", "metric": "exact_match", "higher_is_better": True, "value": 0.9, "items": 400,
            "threshold": 0.02, "tool": "servesweep", "measured_at": datetime(2026, 12, 3, tzinfo=UTC)}
    if compared is None:  # the baseline itself
        return base
    delta, low, high, passed = compared
    return base | {"value": 0.9 + delta, "baseline_run_id": "run-none", "baseline_value": 0.9, "delta": delta,
                   "delta_low": low, "delta_high": high, "passed": passed}


def _quantize_answer(lake: str, tmp_path):
    catalog = round_price_catalog(tmp_path)
    report = build_report(lake, [], SLO, A100, catalog)
    (answer,) = [r for r in report.recommendations if r.question == Question.QUANTIZE]
    connection = connect(lake, SLO, A100, report.run_ids, catalog)
    try:
        values = group_values(connection, answer.scope)
    finally:
        connection.close()
    for variant in report.quantize_variants:
        values.add_row(variant.model_dump(exclude={"accuracy"}))
    assert unmatched(answer.answer, values) == [], answer.answer
    return report, answer


def test_eight_bits_without_accuracy_is_recommended_and_says_accuracy_is_missing(tmp_path):
    _, answer = _quantize_answer(_lake(tmp_path, ("none", "w8a8-int8")), tmp_path)
    assert answer.status == Status.ANSWERED
    # 600 tok/s at $2/h: 1e6 * 2 / (600 * 3600) = $0.926/M; none at 400 tok/s: $1.39/M.
    assert answer.answer.startswith("quantize to w8a8-int8 on nvidia-tesla-a100 x1: w8a8-int8 at its ideal batch 8: "
                                    "$0.926 per million output tokens, against $1.39 per million output tokens for "
                                    "none at its ideal batch 8")
    assert "weights 8.03 GB (checkpoint), 1 GPU(s) needed" in answer.answer
    assert "8-bit or wider weights, so eligible without an accuracy result (none measured)" in answer.answer
    assert answer.answer.endswith("No accuracy data for these variants: run the accuracy step before serving a "
                                  "quantized one.")


def test_below_eight_bits_without_accuracy_is_not_recommended(tmp_path):
    _, answer = _quantize_answer(_lake(tmp_path, ("none", "w4a16")), tmp_path)
    assert answer.answer.startswith("do not quantize on nvidia-tesla-a100 x1: none at its ideal batch 8: $1.39 per "
                                    "million output tokens, against $0.694 per million output tokens for w4a16")
    assert "w4a16: $0.694 per million output tokens, weights 5.7 GB (checkpoint), 1 GPU(s) needed, weights below " \
           "8 bits and no accuracy result inside the threshold" in answer.answer


def test_below_eight_bits_with_accuracy_inside_the_threshold_is_recommended(tmp_path):
    lake = _lake(tmp_path, ("none", "w4a16"), {"w4a16": (-0.01, -0.03, 0.01, True)})
    report, answer = _quantize_answer(lake, tmp_path)
    assert answer.answer.startswith("quantize to w4a16 on nvidia-tesla-a100 x1: w4a16 at its ideal batch 8: $0.694 "
                                    "per million output tokens, against $1.39 per million output tokens for none")
    assert "accuracy inside the threshold (exact_match on addition 0.89 against 0.9, delta -0.01 (95 % CI -0.03 to " \
           "0.01))" in answer.answer
    assert "No accuracy data" not in answer.answer
    table = render_markdown(report)
    assert "| exact_match addition: 0.89 (baseline 0.9) | -0.01 (-0.03-0.01) | 0.02 |" in table


def test_a_variant_past_the_threshold_is_flagged_and_never_recommended(tmp_path):
    """The cheapest variant, at 8 bits, loses 5 points of accuracy: flagged; the baseline is recommended."""
    lake = _lake(tmp_path, ("none", "w8a8-int8"), {"w8a8-int8": (-0.05, -0.08, -0.02, False)})
    _, answer = _quantize_answer(lake, tmp_path)
    assert answer.answer.startswith("do not quantize on nvidia-tesla-a100 x1")
    assert "w8a8-int8: $0.926 per million output tokens, weights 8.03 GB (checkpoint), 1 GPU(s) needed, flagged, " \
           "never recommended: exact_match on addition 0.85 against 0.9, delta -0.05 (95 % CI -0.08 to -0.02), past " \
           "the threshold 0.02" in answer.answer


def test_the_cheapest_passing_variant_wins_over_a_cheaper_flagged_one(tmp_path):
    lake = _lake(tmp_path, ("none", "w8a8-int8", "w4a16"),
                 {"w4a16": (-0.06, -0.09, -0.03, False), "w8a8-int8": (0.0, -0.02, 0.02, True)})
    _, answer = _quantize_answer(lake, tmp_path)
    assert answer.answer.startswith("quantize to w8a8-int8 on nvidia-tesla-a100 x1: w8a8-int8 at its ideal batch 8: "
                                    "$0.926 per million")
    assert "w4a16: $0.694 per million output tokens, weights 5.7 GB (checkpoint), 1 GPU(s) needed, flagged, never " \
           "recommended" in answer.answer


def test_dummy_weights_are_sized_by_the_planner(tmp_path):
    """weight_bytes 0 (the server drew the weights): the planner's parameters x bytes per weight."""
    report, answer = _quantize_answer(_lake(tmp_path, ("none", "w8a8-int8"), weights=False), tmp_path)
    sizes = {v.quantization: (v.weight_source, v.weight_bits, v.gpus_needed) for v in report.quantize_variants}
    assert sizes == {"none": ("planner", 16, 1), "w8a8-int8": ("planner", 8, 1)}
    (int8,) = [v for v in report.quantize_variants if v.quantization == "w8a8-int8"]
    (bf16,) = [v for v in report.quantize_variants if v.quantization == "none"]
    assert int8.weight_gb == pytest.approx(bf16.weight_gb / 2)
    assert f"weights {int8.weight_gb:.3g} GB (planner)" in answer.answer
