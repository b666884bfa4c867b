"""The cross-cutting rule of the report: every sentence is derived from rows of one comparison group, and every
number it states is one of those rows' values in the lake (tests/support/sentences.py).

Checked on the committed H100 and H200 lakes (with the SLOs and baselines of `make bench-gpu-report` and
`make bench-h200-report`) and on the synthetic fleet lake of three accelerators and two quantizations.
"""

from __future__ import annotations

import pytest

from servesweep.analysis.recommend import group_headlines  # noqa: E402
from servesweep.analysis.report import build_report  # noqa: E402
from servesweep.analysis.views import connect  # noqa: E402
from servesweep.catalog import load_catalog  # noqa: E402
from servesweep.spec import SLOSpec  # noqa: E402
from tests.support.analysis_lake import fleet_rows, round_price_catalog, write_points
from tests.support.committed_lakes import H100, H200
from tests.support.paths import REPO
from tests.support.sentences import group_values, numbers_in, unmatched


def _check(lake: str, run_ids: list[str], slo: SLOSpec, baseline: str, catalog=None) -> int:
    """Every sentence of the report against its group's rows; returns how many numbers were checked."""
    catalog = catalog or load_catalog()
    report = build_report(lake, run_ids, slo, baseline, catalog)
    connection = connect(lake, slo, baseline, report.run_ids, catalog)
    checked = 0
    try:
        groups = {row.comparison_group for row in report.ideal_batches}
        everyone = {name for row in report.ideal_batches for name in (row.config_label,)}
        sentences = [(item.scope, item.answer) for item in report.recommendations if item.scope in groups]
        sentences += [(scope, answer.summary) for scope, answer in group_headlines(report.ideal_batches).items()]
        assert sentences
        for scope, sentence in sentences:
            values = group_values(connection, scope)
            # The machine-type answer also quotes the planner's rows of its group (a measured one equals the lake's).
            for option in report.machine_options:
                if option.comparison_group == scope:
                    values.add_row(option.model_dump())
            # The quantize answer quotes the planner's weight memory and GPU count of its variants.
            for variant in report.quantize_variants:
                if variant.comparison_group == scope:
                    values.add_row(variant.model_dump(exclude={"accuracy"}))
            mine = {label for label in everyone if label in values.names}
            # No config of another group is named ...
            others = [label for label in everyone - mine if label in sentence
                      and not any(label in own for own in mine if own in sentence)]
            assert not others, f"{scope}: names configs of other groups {others}: {sentence}"
            # ... and every number is one of this group's values.
            missing = unmatched(sentence, values)
            assert not missing, f"{scope}: {missing} not in the lake: {sentence}"
            checked += len(numbers_in(sentence, values.names))
    finally:
        connection.close()
    return checked


@pytest.mark.parametrize("case", [H100, H200], ids=["h100", "h200"])
def test_committed_lakes_sentences_trace_to_their_group(case):
    assert _check(*case) > 20


def test_fleet_lake_sentences_trace_to_their_group(tmp_path):
    lake = str(tmp_path / "lake")
    write_points(lake, fleet_rows())
    assert _check(lake, [], SLOSpec(ttft_p99_ms=500, tpot_p99_ms=50), "nvidia-l4", round_price_catalog(tmp_path)) > 10


def test_the_checker_catches_a_number_from_another_group(tmp_path):
    """The check is not vacuous: a throughput of the 2048/128 group quoted in a 128/128 sentence fails."""
    lake, run_ids, slo, baseline = H200
    catalog = load_catalog()
    report = build_report(lake, run_ids, slo, baseline, catalog)
    connection = connect(lake, slo, baseline, report.run_ids, catalog)
    try:
        short, long = sorted({r.comparison_group for r in report.measured_ideals() if "128/128" in r.comparison_group
                              or "2048/128" in r.comparison_group})[::-1][:2]
        foreign = next(r for r in report.measured_ideals() if r.comparison_group == long)
        sentence = f"batch 8 reaches {foreign.output_token_throughput:.4g} output tok/s"
        values = group_values(connection, short)
        assert unmatched(sentence, values) == [f"{foreign.output_token_throughput:.4g}"]
        assert unmatched(f"{foreign.output_token_throughput:.4g} tok/s", group_values(connection, long)) == []
    finally:
        connection.close()


def test_numbers_in_reads_what_is_printed():
    found = numbers_in("batch 128 on h200 x1 llama3-8b fp8: 1.475e+04 tok/s, $0.2 per million, 4.9% in TTFT, "
                       "p99 14,745", ["llama3-8b"])
    assert [(printed, value) for printed, value, _ in found] == [
        ("128", 128.0), ("1.475e+04", 14750.0), ("$0.2", 0.2), ("4.9%", 0.049), ("14,745", 14745.0)]


@pytest.mark.parametrize(("target", "committed"), [("bench-gpu-report", H100), ("bench-h200-report", H200)])
def test_the_checked_runs_are_the_ones_the_makefile_reports(target, committed):
    recipe = (REPO / "Makefile").read_text().split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    command = recipe.replace("\\\n", " ").split("servesweep report", 1)[1].split("--lake", 1)[0]
    assert command.split() == committed[1]
