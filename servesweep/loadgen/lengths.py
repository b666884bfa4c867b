"""Lengths that vary from request to request: fixed, uniform, normal or log-normal around a mean, seeded."""

from __future__ import annotations

import numpy as np

from servesweep.spec import LengthDistribution


class LengthSampler:
    """Draws lengths (tokens) of one distribution; `mean` is the workload's own length (lognormal: the median),
    every draw clipped to [low, high]."""

    def __init__(self, distribution: LengthDistribution | None, mean: int, low: int, high: int, seed: int) -> None:
        self._d = distribution or LengthDistribution()
        self._mean = mean
        self._low = max(low, self._d.min or low)
        self._high = max(self._low, min(high, self._d.max or max(high if self._d.kind == "fixed" else 2 * mean, mean)))
        self._rng = np.random.default_rng(seed)

    def draw(self) -> int:
        d, rng = self._d, self._rng
        if d.kind == "fixed":
            value = float(self._mean)
        elif d.kind == "uniform":
            assert d.min is not None and d.max is not None
            value = float(rng.integers(d.min, d.max + 1))
        elif d.kind == "normal":
            assert d.stddev is not None
            value = rng.normal(self._mean, d.stddev)
        else:
            assert d.sigma is not None
            value = rng.lognormal(np.log(self._mean), d.sigma)
        return int(min(max(round(value), self._low), self._high))
