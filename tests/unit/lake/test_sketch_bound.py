"""The per-point DDSketch bins: the library's own mapping, merges, and the relative-error bound."""

import numpy as np
import pytest
from ddsketch import DDSketch

from servesweep.lake import sketch

ALPHA = sketch.RELATIVE_ACCURACY


def _library(values: np.ndarray) -> DDSketch:
    dd = DDSketch(ALPHA)
    for v in values:
        dd.add(float(v))
    return dd


def test_keys_and_values_are_the_library_mapping():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.lognormal(2, 2, 20000), [1e-6, 0.5, 1.0, 2.0, 1e5]])
    dd = DDSketch(ALPHA)
    assert dd._mapping.gamma == pytest.approx(sketch.GAMMA, rel=1e-15)
    mine = sketch.keys(values)
    theirs = np.array([dd._mapping.key(float(v)) for v in values])
    assert (mine == theirs).mean() > 0.9999  # ties at a bucket edge may round either way (still within ALPHA)
    for key in (-50, 0, 1, 173, 900):
        assert sketch.value(key) == pytest.approx(dd._mapping.value(key), rel=1e-12)


@pytest.mark.parametrize("dist", ["lognormal", "bimodal", "uniform", "with_zeros"])
def test_quantiles_within_the_bound_of_the_exact_rank_value(dist):
    rng = np.random.default_rng(7)
    values = {"lognormal": rng.lognormal(3, 0.8, 30000),
              "bimodal": np.concatenate([rng.normal(10, 1, 20000).clip(0.01), rng.normal(400, 30, 3000)]),
              "uniform": rng.uniform(0.1, 1000, 30000),
              "with_zeros": np.concatenate([np.zeros(500), rng.lognormal(1, 1, 20000)])}[dist]
    bins = sketch.sketch(values)
    from servesweep.analysis.pooled import _merged  # the merge the pooled path uses
    merged = _merged([bins])
    ordered = np.sort(values)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        rank = q * (len(values) - 1)
        lo, hi = ordered[int(np.floor(rank))], ordered[int(np.ceil(rank))]
        got = merged.get_quantile_value(q)
        assert abs(got - lo) <= ALPHA * lo + 1e-12, (q, got, lo)
        exact = np.percentile(values, q * 100)  # numpy's interpolation lies between the two rank values
        assert lo <= exact <= hi
        assert got == pytest.approx(_library(values).get_quantile_value(q), rel=1e-9) if q in (0.5, 0.99) else True


def test_merging_points_is_adding_bins_and_equals_the_library_merge():
    rng = np.random.default_rng(3)
    parts = [rng.lognormal(m, 0.5, 3000) for m in (1.0, 2.0, 3.5)]
    from servesweep.analysis.pooled import _merged
    merged = _merged([sketch.sketch(p) for p in parts])
    library = _library(parts[0])
    for p in parts[1:]:
        library.merge(_library(p))
    pooled = np.concatenate(parts)
    ordered = np.sort(pooled)
    for q in (0.5, 0.9, 0.99):
        assert merged.get_quantile_value(q) == pytest.approx(library.get_quantile_value(q), rel=1e-9)
        lo = ordered[int(np.floor(q * (len(pooled) - 1)))]
        assert abs(merged.get_quantile_value(q) - lo) <= ALPHA * lo
    assert merged.count == len(pooled)


def test_grouped_equals_one_sketch_per_group():
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 4, 5000)
    values = rng.lognormal(2, 1, 5000)
    values[::97] = np.nan
    values[::101] = 0.0
    got = sketch.grouped(groups, values, 5)
    assert got[4] is None
    for g in range(4):
        assert got[g] == sketch.sketch(values[(groups == g) & ~np.isnan(values)])
