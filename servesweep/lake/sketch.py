"""Mergeable quantile sketches stored per point: DDSketch bins (Masson, Rim, Lee, VLDB 2019).

A sketch is the histogram of a point's values over logarithmic buckets: bucket ``k`` holds the values in
``(gamma^(k-1), gamma^k]`` with ``gamma = (1 + a) / (1 - a)`` and ``a = RELATIVE_ACCURACY``; values at or below
the smallest positive double go to ``zero_count``. This is the DDSketch of DataDog's ``ddsketch`` library
(``DDSketch(RELATIVE_ACCURACY)``: LogarithmicMapping, unlimited dense store), computed here with numpy so the
writer needs no extra; readers merge and query them with that library (servesweep.analysis.pooled).

Merging sketches of one mapping is adding their bins, so a set of points' pooled percentile needs their bins
only, never their raw values. The bound: the sketch's q-quantile is within a relative ``RELATIVE_ACCURACY`` of
the exact value at rank ``floor(q * (n - 1))`` of the pooled values; numpy's (linear-interpolation) percentile
lies between the values at ranks ``floor`` and ``ceil`` of ``q * (n - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

RELATIVE_ACCURACY = 0.01
_GAMMA_MANTISSA = 2 * RELATIVE_ACCURACY / (1 - RELATIVE_ACCURACY)
GAMMA = 1 + _GAMMA_MANTISSA
# ddsketch's LogarithmicMapping: key(v) = ceil(log2(v) * multiplier), value(k) = 2^(k / multiplier) * 2 / (1 + gamma)
_MULTIPLIER = math.log(2) / math.log1p(_GAMMA_MANTISSA)
_MIN_POSITIVE = np.finfo(np.float64).tiny * GAMMA

SKETCH_TYPE = pa.struct([
    pa.field("keys", pa.list_(pa.int32())),
    pa.field("counts", pa.list_(pa.int64())),
    pa.field("zero_count", pa.int64()),
])


def keys(values: np.ndarray) -> np.ndarray:
    """Bucket keys of positive values (those above the zero bucket's bound)."""
    return np.ceil(np.log2(values.astype(np.float64)) * _MULTIPLIER).astype(np.int32)


def value(key: int) -> float:
    """The value a bucket reports: within RELATIVE_ACCURACY of every value in it."""
    return float(2.0 ** (key / _MULTIPLIER) * (2.0 / (1 + GAMMA)))


def sketch(values: Iterable[float | None] | np.ndarray) -> dict[str, Any] | None:
    """The sketch of the non-null, non-negative values (None when there are none): sorted keys, their counts
    and the zero bucket's count. Negative values (none of the sketched latencies has one) are refused."""
    array = np.asarray(values if isinstance(values, np.ndarray) else [v for v in values if v is not None],
                       dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return None
    if (array < 0).any():
        raise ValueError("sketched values must be >= 0")
    positive = array[array > _MIN_POSITIVE]
    found, counts = np.unique(keys(positive), return_counts=True)
    return {"keys": found.tolist(), "counts": counts.tolist(), "zero_count": int(array.size - positive.size)}


def grouped(groups: np.ndarray, values: np.ndarray, n_groups: int) -> list[dict[str, Any] | None]:
    """One sketch per group (`groups` holds 0..n_groups-1, one per value), vectorised: the lake's fast path for
    many points at once (the migration, benchmarks). Null values (NaN) are skipped."""
    keep = ~np.isnan(values)
    groups, values = groups[keep], values[keep].astype(np.float64)
    if (values < 0).any():
        raise ValueError("sketched values must be >= 0")
    positive = values > _MIN_POSITIVE
    zeros = np.bincount(groups[~positive], minlength=n_groups)
    pos_groups = groups[positive].astype(np.int64)
    pos_keys = keys(values[positive]).astype(np.int64)
    offset = int(pos_keys.min()) if pos_keys.size else 0
    span = int(pos_keys.max()) - offset + 1 if pos_keys.size else 1
    histogram = np.bincount(pos_groups * span + (pos_keys - offset), minlength=n_groups * span)
    combined = np.flatnonzero(histogram)
    counts = histogram[combined]
    bounds = np.searchsorted(combined // span, np.arange(n_groups + 1))
    totals = np.bincount(groups, minlength=n_groups)
    result: list[dict[str, Any] | None] = []
    for group in range(n_groups):
        if totals[group] == 0:
            result.append(None)
            continue
        lo, hi = bounds[group], bounds[group + 1]
        result.append({"keys": (combined[lo:hi] % span + offset).tolist(), "counts": counts[lo:hi].tolist(),
                       "zero_count": int(zeros[group])})
    return result
