"""Early-stop constraints, one class each, and the adaptive search stopping on them."""

from __future__ import annotations

import math

import pytest

from servesweep.loadgen.adaptive import PointResult, find_largest_batch
from servesweep.loadgen.constraints import (
    BudgetExceeded,
    ErrorRateAbove,
    Level,
    SLOBroken,
    ThroughputPlateau,
    constraints_for,
    first_stop,
)
from servesweep.spec import SLOSpec, StopSpec


def _level(batch: int, throughput: float | None = 100.0, errors: float = 0.0, margin: float = 0.5,
           seconds: float = 60.0) -> Level:
    return Level(batch, throughput, errors, margin, seconds)


def test_throughput_plateau_needs_the_gain_over_the_best_level_before():
    rule = ThroughputPlateau(0.10)
    assert rule.check([_level(1, 100)]) is None
    assert rule.check([_level(1, 100), _level(2, 115)]) is None
    reason = rule.check([_level(1, 100), _level(2, 115), _level(4, 120)])
    assert reason is not None and reason.startswith("throughput plateau: batch 4 gave 120.0 tok/s")


def test_error_rate_slo_and_budget():
    assert ErrorRateAbove(0.1).check([_level(1, errors=0.2)]) == "error rate: 20% of batch 1's requests failed " \
                                                                  "(limit 10%)"
    assert ErrorRateAbove(0.1).check([_level(1, errors=0.1)]) is None
    assert SLOBroken(1.5).check([_level(8, margin=1.6)]) is not None
    assert "failed" in (SLOBroken(1.5).check([_level(8, margin=math.inf)]) or "")
    budget = BudgetExceeded(accelerators=2, max_hours=0.1)
    assert budget.check([_level(1, seconds=60)]) is None  # 2 x 2 min = 0.067 h after the next level
    assert budget.check([_level(1, seconds=60), _level(2, seconds=70)]) is not None  # 2 x 200 s > 0.1 h
    dollars = BudgetExceeded(accelerators=1, max_dollars=1.0, price_per_hour=10.0)
    assert dollars.check([_level(1, seconds=360)]) is not None  # $1 spent, the next level passes $1
    assert BudgetExceeded(accelerators=1, max_dollars=1.0).check([_level(1, seconds=3600)]) is None  # no price


def test_the_spec_builds_the_constraints_in_order():
    rules = constraints_for(StopSpec(min_throughput_gain=0.05, error_rate_above=0.2, max_gpu_hours=1), 4, None)
    assert [type(r).__name__ for r in rules] == ["ErrorRateAbove", "ThroughputPlateau", "BudgetExceeded"]
    assert first_stop(rules, [_level(1, errors=0.5)]).startswith("error rate")  # type: ignore[union-attr]
    assert constraints_for(None) == []


def test_the_adaptive_search_stops_on_a_constraint_with_the_best_so_far():
    def measure(batch: int) -> PointResult:  # latency grows with batch; throughput flat from 4 on
        return PointResult(batch_size=batch, ttft_p99_ms=10.0 * batch, output_throughput=min(batch, 4) * 100.0)

    slo = SLOSpec(ttft_p99_ms=1000.0)
    full = find_largest_batch(measure, slo, 64)
    stopped = find_largest_batch(measure, slo, 64, constraints=[ThroughputPlateau(0.05)])
    assert full.best_batch == 64 and full.stop_reason is None
    assert stopped.best_batch == 8 and stopped.points_used == 4  # 1, 2, 4, 8: 8 adds nothing over 4
    assert stopped.stop_reason is not None and stopped.stop_reason.startswith("throughput plateau: batch 8")


def test_stop_rules_climb_one_server_once_and_take_repeats():
    from servesweep.spec import SpecError, parse_spec

    stop = {"requests_per_point": 1, "stop": {"min_throughput_gain": 0.1}}
    with pytest.raises(SpecError, match="sweep.stop climbs one server's levels"):
        parse_spec({"sweep": {**stop, "modes": ["server_max_seqs"]}})
    assert parse_spec({"sweep": {**stop, "repeats": 2}}).sweep.repeats == 2  # the first repeat decides
