"""ITL percentiles' intervals: a cluster bootstrap over whole requests, computed on log bins."""

import numpy as np
import pytest

from servesweep.lake.schema import CI_PERCENTILES, ITL_BIN_ACCURACY
from servesweep.metrics.intervals import RESAMPLES, _itl_intervals, point_intervals


def _requests(gap_means: list[float], gaps: int = 50, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"itl_ms": list(rng.normal(mean, mean * 0.05, gaps))} for mean in gap_means]


def _explicit(repeats: list[list[dict]], seed: int) -> dict[str, float]:
    """The same resamples (same draws from the same seed), pooling the exact gaps."""
    rng = np.random.default_rng(seed)
    lists = [[np.asarray(r["itl_ms"]) for r in rows] for rows in repeats]
    picks = {stat: [] for stat in CI_PERCENTILES}
    for _ in range(RESAMPLES):
        pool = []
        for group in rng.integers(0, len(lists), len(lists)):
            n = len(lists[group])
            pool.extend(lists[group][i] for i in rng.integers(0, n, n))
        gaps = np.concatenate(pool)
        for stat in CI_PERCENTILES:
            picks[stat].append(np.percentile(gaps, float(stat[1:]), method="inverted_cdf"))
    return {f"itl_{stat}_ci_{end}_ms": float(np.percentile(picks[stat], tail))
            for stat in CI_PERCENTILES for end, tail in (("low", 2.5), ("high", 97.5))}


def test_binned_bounds_match_an_explicit_cluster_bootstrap_within_the_bin_accuracy():
    repeats = [_requests([10.0] * 20 + [20.0] * 20), _requests([12.0] * 30 + [18.0] * 10, seed=2)]
    binned = _itl_intervals(np.random.default_rng(7), repeats)
    exact = _explicit(repeats, 7)
    for key, value in exact.items():
        assert binned[key] == pytest.approx(value, rel=2 * ITL_BIN_ACCURACY), key


def test_requests_are_the_unit_not_gaps():
    # Two kinds of request: which kind a resample draws more of moves the median; gap-level resampling
    # would pretend 2000 independent gaps and give a far narrower interval.
    result = _itl_intervals(np.random.default_rng(0), [_requests([10.0] * 20 + [20.0] * 20)])
    assert result["itl_p50_ci_high_ms"] - result["itl_p50_ci_low_ms"] > 5.0
    same = _itl_intervals(np.random.default_rng(0), [_requests([10.0] * 40, seed=3)])
    assert same["itl_p50_ci_high_ms"] - same["itl_p50_ci_low_ms"] < 0.5


def test_point_intervals_fill_the_itl_columns_and_leave_them_null_without_gaps():
    rows = [{"ttft_ms": 5.0, "tpot_ms": 1.0, "e2e_ms": 60.0, "sent_at_s": i * 0.1, "output_tokens": 51,
             "itl_ms": [1.0 + 0.01 * i] * 50} for i in range(30)]
    filled = point_intervals([rows], seed=0)
    assert filled["itl_p50_ci_low_ms"] <= 1.15 <= filled["itl_p50_ci_high_ms"] + 0.02
    empty = point_intervals([[dict(r, itl_ms=[]) for r in rows]], seed=0)
    assert empty["itl_p99_ci_low_ms"] is None and empty["itl_p99_ci_high_ms"] is None
