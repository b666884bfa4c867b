"""Adaptive batch-size search against synthetic latency curves, compared with the full grid."""

import math
import random

import pytest

from servesweep.loadgen.adaptive import PointResult, find_largest_batch, meets
from servesweep.spec import SLOSpec

SLO = SLOSpec(ttft_p99_ms=200.0, tpot_p99_ms=50.0)
MAX_BATCH = 256


def curve(ttft: callable, tpot: callable):
    def measure(batch: int) -> PointResult:
        return PointResult(batch_size=batch, ttft_p99_ms=ttft(batch), tpot_p99_ms=tpot(batch))

    return measure


def grid_answer(measure, slo: SLOSpec, max_batch: int) -> int | None:
    """What a full grid reports: the largest batch that, like every smaller one, met the SLO."""
    best = None
    for batch in range(1, max_batch + 1):
        if not meets(measure(batch), slo):
            break
        best = batch
    return best


def counted(measure):
    calls = []

    def wrapper(batch: int) -> PointResult:
        calls.append(batch)
        return measure(batch)

    return wrapper, calls


MONOTONE = curve(lambda b: 20 + 1.5 * b, lambda b: 10 + 0.2 * b)  # ttft limit at b=120, tpot at b=200
QUEUEING = curve(lambda b: 30 + 400 * b / (300 - b), lambda b: 12 + 0.05 * b)  # knee near the SLO


def _noisy(seed: int):
    rng = random.Random(seed)
    # +-0.3 %: smaller than the curve's 0.75 % rise per batch at the SLO, so pass/fail stays monotone
    noise = {b: rng.uniform(-0.003, 0.003) for b in range(1, MAX_BATCH + 1)}
    return curve(lambda b: (20 + 1.5 * b) * (1 + noise[b]), lambda b: (10 + 0.2 * b) * (1 - noise[b]))


@pytest.mark.parametrize("measure", [MONOTONE, QUEUEING, _noisy(1), _noisy(2), _noisy(3)])
def test_same_answer_as_the_grid_with_fewer_points(measure):
    probe, calls = counted(measure)
    result = find_largest_batch(probe, SLO, MAX_BATCH)
    assert result.best_batch == grid_answer(measure, SLO, MAX_BATCH)
    assert result.points_used == len(calls) == len(set(calls))  # no point measured twice
    assert result.points_used <= 2 * math.ceil(math.log2(MAX_BATCH)) + 1 < result.grid_points
    assert [p.batch_size for p in result.trace] == calls


def test_monotone_curve_answer_by_hand():
    # ttft = 20 + 1.5 b <= 200  <=>  b <= 120; tpot allows up to 200: the answer is 120.
    assert find_largest_batch(MONOTONE, SLO, MAX_BATCH).best_batch == 120


def test_never_meets_the_slo():
    measure = curve(lambda b: 500.0, lambda b: 10.0)
    result = find_largest_batch(measure, SLO, MAX_BATCH)
    assert result.best_batch is None and grid_answer(measure, SLO, MAX_BATCH) is None
    assert result.points_used == 1


def test_always_meets_the_slo():
    measure = curve(lambda b: 10.0 + b * 0.01, lambda b: 5.0)
    result = find_largest_batch(measure, SLO, 100)
    assert result.best_batch == 100 == grid_answer(measure, SLO, 100)
    assert [p.batch_size for p in result.trace] == [1, 2, 4, 8, 16, 32, 64, 100]


def test_failed_points_count_as_missing_the_slo():
    def measure(batch: int) -> PointResult:
        if batch > 40:  # e.g. the server ran out of KV cache
            return PointResult(batch_size=batch, failed=True)
        return PointResult(batch_size=batch, ttft_p99_ms=50.0, tpot_p99_ms=20.0)

    assert find_largest_batch(measure, SLO, MAX_BATCH).best_batch == 40


def test_non_monotone_curve_returns_a_measured_boundary():
    # Passes up to 60, fails 61..80, passes again 81..90: no sparse search can promise 90.
    measure = curve(lambda b: 100.0 if b <= 60 or 80 < b <= 90 else 300.0, lambda b: 10.0)
    result = find_largest_batch(measure, SLO, 128)
    measured = {p.batch_size: meets(p, SLO) for p in result.trace}
    assert measured[result.best_batch] and measured.get(result.best_batch + 1) is False


def test_bad_range():
    with pytest.raises(ValueError):
        find_largest_batch(MONOTONE, SLO, 0)


def test_rejudge_takes_the_largest_pooled_pass_below_the_smallest_pooled_failure():
    from servesweep.loadgen.adaptive import PointResult, rejudge
    from servesweep.spec import SLOSpec

    slo = SLOSpec(ttft_p99_ms=100.0)
    pooled = [PointResult(batch_size=b, ttft_p99_ms=t) for b, t in [(1, 10), (2, 20), (4, 120), (3, 90), (8, 80)]]
    assert rejudge(pooled, slo) == 3  # 8 passes pooled, but 4 failed below it: a boundary, as the search's rule
    assert rejudge([PointResult(batch_size=1, ttft_p99_ms=150.0)], slo) is None
    assert rejudge([PointResult(batch_size=b, ttft_p99_ms=1.0) for b in (1, 2)], slo) == 2
