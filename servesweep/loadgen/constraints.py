"""Early-stop constraints: when a sweep stops climbing to the next level (batch size or stage).

Each constraint is one class with `check(history) -> reason | None`, judged after every measured level of a
climb (one workload's levels, in order); the first reason stops the climb, and that level's point records it
(`points.stop_reason`). The grid and the adaptive search (servesweep.loadgen.adaptive) use the same ones.

| constraint | stops when |
|---|---|
| ThroughputPlateau | the level raised output throughput by less than `min_gain` over the best level before it |
| ErrorRateAbove | more than `max_rate` of the level's measured requests failed |
| SLOBroken | the level's p99 SLO metric is over its limit by more than `margin` (1.2 = 20 % over) |
| BudgetExceeded | another level like the last would take the accelerator time or money past the budget |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from servesweep.spec import StopSpec


@dataclass(frozen=True)
class Level:
    """What a constraint sees of one measured level."""

    batch_size: int
    output_throughput: float | None  # tok/s; None: nothing succeeded
    error_rate: float  # failed / measured requests
    slo_margin: float  # max over the p99 SLO limits of metric / limit (0 without limits; inf when failed)
    seconds: float  # wall time the level took


class Constraint(Protocol):
    def check(self, history: Sequence[Level]) -> str | None:
        """Why to stop climbing after the latest level of `history`; None: go on."""
        ...


@dataclass(frozen=True)
class ThroughputPlateau:
    min_gain: float  # fraction: 0.05 = the next level must add 5 %

    def check(self, history: Sequence[Level]) -> str | None:
        if len(history) < 2:
            return None
        best = max((level.output_throughput or 0.0 for level in history[:-1]), default=0.0)
        latest = history[-1].output_throughput or 0.0
        if best > 0 and latest < best * (1.0 + self.min_gain):
            return (f"throughput plateau: batch {history[-1].batch_size} gave {latest:.1f} tok/s, less than "
                    f"{self.min_gain:.0%} over the best so far ({best:.1f} tok/s)")
        return None


@dataclass(frozen=True)
class ErrorRateAbove:
    max_rate: float

    def check(self, history: Sequence[Level]) -> str | None:
        latest = history[-1]
        if latest.error_rate > self.max_rate:
            return (f"error rate: {latest.error_rate:.0%} of batch {latest.batch_size}'s requests failed "
                    f"(limit {self.max_rate:.0%})")
        return None


@dataclass(frozen=True)
class SLOBroken:
    margin: float  # stop when metric / limit > margin

    def check(self, history: Sequence[Level]) -> str | None:
        latest = history[-1]
        if latest.slo_margin > self.margin:
            over = "failed" if math.isinf(latest.slo_margin) else f"{latest.slo_margin:.2f}x its limit"
            return f"SLO broken: batch {latest.batch_size} is {over} (stop beyond {self.margin:.2f}x)"
        return None


@dataclass(frozen=True)
class BudgetExceeded:
    """A budget of accelerator-hours (accelerators x wall time) or dollars (at `price_per_hour` per
    accelerator, the catalog's list price)."""

    accelerators: int
    max_hours: float | None = None
    max_dollars: float | None = None
    price_per_hour: float | None = None

    def check(self, history: Sequence[Level]) -> str | None:
        spent = self.accelerators * sum(level.seconds for level in history) / 3600.0
        projected = spent + self.accelerators * history[-1].seconds / 3600.0  # one more level like the last
        if self.max_hours is not None and projected > self.max_hours:
            return (f"budget: {spent:.4g} accelerator-hours spent, another level would pass the "
                    f"{self.max_hours:g} allowed")
        if self.max_dollars is not None and self.price_per_hour is not None \
                and projected * self.price_per_hour > self.max_dollars:
            return (f"budget: ${spent * self.price_per_hour:.2f} spent, another level would pass the "
                    f"${self.max_dollars:g} allowed")
        return None


def constraints_for(stop: StopSpec | None, accelerators: int = 1,
                    price_per_hour: float | None = None) -> list[Constraint]:
    """The spec's stop rules as constraints, in the order they are judged."""
    if stop is None:
        return []
    found: list[Constraint] = []
    if stop.error_rate_above is not None:
        found.append(ErrorRateAbove(stop.error_rate_above))
    if stop.slo_margin is not None:
        found.append(SLOBroken(stop.slo_margin))
    if stop.min_throughput_gain is not None:
        found.append(ThroughputPlateau(stop.min_throughput_gain))
    if stop.max_gpu_hours is not None or stop.max_dollars is not None:
        found.append(BudgetExceeded(accelerators, stop.max_gpu_hours, stop.max_dollars, price_per_hour))
    return found


def first_stop(constraints: Sequence[Constraint], history: Sequence[Level]) -> str | None:
    """The first constraint's reason to stop after the latest level, if any."""
    for constraint in constraints:
        if reason := constraint.check(history):
            return reason
    return None
