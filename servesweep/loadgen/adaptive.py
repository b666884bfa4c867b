"""Adaptive batch-size search: the largest batch meeting the SLO with fewer points than a full grid.

Doubling from the smallest batch brackets the SLO boundary (last pass, first fail); the bracket is
then narrowed on the measured curve: the next probe is where the straight line between the two
bracket points crosses the SLO (regula falsi), falling back to plain bisection whenever a probe did
not at least halve the bracket, so the search never needs more than about 2 log2(max_batch) points.

The answer equals a full grid's when pass/fail is monotone in batch size (latency grows with load,
noise smaller than the slope at the boundary). On a non-monotone curve it returns a batch that met
the SLO with a measured failure right above it: a boundary, not necessarily the largest passing one.

With `sweep.repeats` > 1 the search runs on the first repeat (each probe depends on the last), then
every probed batch runs again per further repeat, interleaved (all probed batches, then all again),
and `rejudge` decides on the pooled repeats: the answer is the largest pooled pass below the smallest
pooled failure, so one noisy first measurement cannot decide it alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pydantic import BaseModel, Field

from servesweep.loadgen.constraints import Constraint, Level, first_stop
from servesweep.spec import SLOSpec

_SLO_METRICS = ("ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms")


class PointResult(BaseModel):
    """What the search needs from one measured point."""

    batch_size: int = Field(ge=1)
    ttft_p99_ms: float | None = None
    tpot_p99_ms: float | None = None
    e2e_p99_ms: float | None = None
    failed: bool = Field(False, description="No successful request: counts as missing the SLO.")
    output_throughput: float | None = Field(None, description="Output tok/s (for the stop constraints).")
    error_rate: float = Field(0.0, description="Failed / measured requests.")
    seconds: float = Field(0.0, description="Wall time the point took.")


class AdaptiveResult(BaseModel):
    best_batch: int | None = Field(description="Largest batch meeting the SLO; None when even the smallest missed.")
    points_used: int
    grid_points: int = Field(description="Points a full grid over the same range would have measured.")
    trace: list[PointResult] = Field(description="Measured points, in measurement order.")
    stop_reason: str | None = Field(None, description="Why a stop constraint ended the search early.")
    repeats: int = Field(1, ge=1, description="Measurements of each probed batch, pooled for the answer.")
    first_repeat_batch: int | None = Field(None, description="With repeats: the first repeat's answer, before "
                                           "the pooled rejudgement (equal to best_batch unless noise moved it).")
    pooled: list[PointResult] = Field([], description="With repeats: each probed batch over all its repeats.")


class _Stopped(Exception):
    """A stop constraint fired: the search ends with what it has."""


def slo_margin(point: PointResult, slo: SLOSpec) -> float:
    """max(metric / limit) over the SLO's limits: <= 1 meets the SLO; inf for failed or missing data."""
    ratios = []
    for metric in _SLO_METRICS:
        limit = getattr(slo, metric)
        if limit is None:
            continue
        value = getattr(point, metric)
        ratios.append(math.inf if value is None else value / limit)
    if point.failed or not ratios:
        return math.inf if point.failed else 0.0
    return max(ratios)


def meets(point: PointResult, slo: SLOSpec) -> bool:
    return slo_margin(point, slo) <= 1.0


def level_of(point: PointResult, slo: SLOSpec) -> Level:
    """What the stop constraints see of a measured point."""
    return Level(point.batch_size, point.output_throughput, point.error_rate, slo_margin(point, slo), point.seconds)


def find_largest_batch(measure: Callable[[int], PointResult], slo: SLOSpec, max_batch: int,
                       min_batch: int = 1, constraints: list[Constraint] | None = None) -> AdaptiveResult:
    """Search integer batch sizes in [min_batch, max_batch]; each is measured at most once. A stop constraint
    (servesweep.loadgen.constraints), judged on the points in measurement order, ends the search early: the
    answer is then the largest batch that met the SLO so far."""
    if not 1 <= min_batch <= max_batch:
        raise ValueError("need 1 <= min_batch <= max_batch")
    trace: list[PointResult] = []
    margins: dict[int, float] = {}
    stop: str | None = None

    def probe(batch: int) -> bool:
        nonlocal stop
        if batch not in margins:
            point = measure(batch)
            trace.append(point)
            margins[batch] = slo_margin(point, slo)
            if constraints and (stop := first_stop(constraints, [level_of(p, slo) for p in trace])):
                raise _Stopped
        return margins[batch] <= 1.0

    try:
        passing, failing = _double(probe, min_batch, max_batch)
        if passing is not None and failing is not None:
            passing = _narrow(probe, margins, passing, failing)
    except _Stopped:
        met = [b for b, margin in margins.items() if margin <= 1.0]
        passing = max(met) if met else None
    return AdaptiveResult(best_batch=passing, points_used=len(trace), grid_points=max_batch - min_batch + 1,
                          trace=trace, stop_reason=stop)


def rejudge(pooled: list[PointResult], slo: SLOSpec) -> int | None:
    """The largest batch whose pooled repeats meet the SLO, below the smallest one whose pooled repeats
    miss it (the search's own rule, on pooled data instead of first measurements)."""
    failing = min((p.batch_size for p in pooled if not meets(p, slo)), default=None)
    passing = [p.batch_size for p in pooled if meets(p, slo) and (failing is None or p.batch_size < failing)]
    return max(passing, default=None)


def _double(probe: Callable[[int], bool], low: int, high: int) -> tuple[int | None, int | None]:
    """(largest passing, smallest failing) seen while doubling from `low` up to `high`."""
    passing, batch = None, low
    while True:
        if not probe(batch):
            return passing, batch
        passing = batch
        if batch == high:
            return passing, None
        batch = min(batch * 2, high)


def _narrow(probe: Callable[[int], bool], margins: dict[int, float], passing: int, failing: int) -> int:
    """Shrink (passing, failing) to adjacent batches; returns the passing end."""
    bisect_next = False
    while failing - passing > 1:
        width = failing - passing
        guess = None if bisect_next else _crossing(passing, margins[passing], failing, margins[failing])
        batch = guess if guess is not None else (passing + failing) // 2
        if probe(batch):
            passing = batch
        else:
            failing = batch
        bisect_next = failing - passing > width // 2  # a probe that did not halve the bracket: bisect next
    return passing


def _crossing(low: int, low_margin: float, high: int, high_margin: float) -> int | None:
    """Batch where the line through (low, low_margin) and (high, high_margin) reaches margin 1."""
    if not math.isfinite(high_margin) or high_margin <= low_margin:
        return None
    at = low + (1.0 - low_margin) * (high - low) / (high_margin - low_margin)
    return min(max(int(math.floor(at)), low + 1), high - 1)
