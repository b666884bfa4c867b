"""The load-generator benchmark's verdicts: what counts as sustained, and how capacity is searched."""

from pathlib import Path

import pytest

from benchmarks.loadgen import run_bench
from benchmarks.loadgen.run_bench import BenchConfig, PointResult, capacity_bracket, judge

CFG = BenchConfig()


def _point(level: int, achieved_fraction: float = 1.0, cores: float = 0.5, loop_lag_ms: float | None = 1.0,
           errors: int = 0) -> PointResult:
    requested = level / CFG.ideal_request_s
    return PointResult(client="c", concurrency=level, requests_expected=3 * level, requests_matched=3 * level,
                       errors=errors, requested_rate=requested, achieved_rate=achieved_fraction * requested,
                       client_cores=cores, client_loop_lag_p99_ms=loop_lag_ms, server_late_p99_ms=1.0)


def test_sustained_needs_the_rate_no_errors_and_a_client_that_keeps_up():
    assert judge(_point(64), CFG).sustained
    assert not judge(_point(64, achieved_fraction=0.9), CFG).sustained
    assert not judge(_point(64, errors=1), CFG).sustained
    busy = judge(_point(64, cores=0.97), CFG)
    assert not busy.sustained and busy.client_saturated and "0.97 cores" in busy.note
    lagging = judge(_point(64, loop_lag_ms=CFG.itl_ms + 1), CFG)
    assert not lagging.sustained and "loop lag" in lagging.note
    assert judge(_point(64, loop_lag_ms=None), CFG).sustained  # peers report no loop lag: CPU alone decides
    stalled = judge(_point(64).model_copy(update={"client_loop_lag_max_ms": CFG.itl_ms * 2.4}), CFG)
    assert not stalled.sustained and stalled.note == "client saturated (loop stalled 24.0 ms > ITL)"
    assert judge(_point(64).model_copy(update={"client_loop_lag_max_ms": CFG.itl_ms / 2}), CFG).sustained


def test_judging_twice_does_not_repeat_the_verdict():
    once = judge(_point(64, cores=0.99), CFG)
    again = judge(PointResult.model_validate({**once.model_dump(), "note": run_bench._without_verdicts(once.note)}),
                  CFG)
    assert again.note == once.note


def test_capacity_bracket():
    points = [judge(_point(level, cores=cores), CFG) for level, cores in ((4, 0.1), (8, 0.2), (16, 0.99))]
    assert capacity_bracket(points) == (8, 16)
    assert capacity_bracket(points[:2]) == (8, None)
    assert capacity_bracket([points[2]]) == (None, 16)


@pytest.mark.parametrize("knee, expected", [(700, [4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 640, 704, 512]),
                                            (10, [4, 8, 16, 32, 12, 10, 8])])
def test_ladder_then_bisection_then_80_percent(monkeypatch, knee, expected):
    """A client whose core saturates above `knee` streams: the run finds the knee and measures 80 % of it."""
    def fake_point(cfg, client, level, out_root, tokenizer):
        return judge(_point(level, cores=0.99 if level > knee else 0.5), cfg)

    monkeypatch.setattr(run_bench, "run_point", fake_point)
    points = run_bench.run_client(BenchConfig(refine_steps=2), run_bench.CLIENT_TABLE["servesweep"], Path("."),
                                  Path("."))
    assert [p.concurrency for p in points] == expected
    assert points[-1].role == "80% of capacity"
    assert [p.role for p in points].count("refine") == 2
