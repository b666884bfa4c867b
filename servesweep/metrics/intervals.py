"""95 % intervals of a point's statistics: a two-level percentile bootstrap, numpy only, seeded.

Level one resamples the point's repeats, level two the units inside each drawn repeat: requests for
latency percentiles, equal time bins of the measured window for output throughput (tokens are not
independent per request: a request's tokens share its slot's time, so the window's time is the unit
that varies). With one repeat only the second level varies. Definitions: servesweep/lake/schema.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from servesweep.lake.schema import CI_METRICS, CI_PERCENTILES, ITL_BIN_ACCURACY

RESAMPLES = 1000
BINS = 10  # time bins per repeat's measured window
LEVEL = 0.95
_QUANTILES = np.array([float(p.removeprefix("p")) for p in CI_PERCENTILES])
_TAILS = (100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2)
NOISE_STATS = ("output_token_throughput", "ttft_p50_ms", "tpot_p50_ms", "e2e_p50_ms")

Row = Mapping[str, Any]


def seed_for(point_id: str, base_seed: int = 0) -> int:
    """A 32-bit seed of its own per point: the same data gives the same intervals."""
    return int.from_bytes(hashlib.sha256(f"{base_seed}:{point_id}".encode()).digest()[:4], "little")


def by_repeat(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows grouped by repeat (rows without one are repeat 0), in repeat order."""
    groups: dict[int, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.get("repeat") or 0, []).append(row)
    return [groups[key] for key in sorted(groups)]


def point_intervals(repeats: Sequence[Sequence[Row]], seed: int) -> dict[str, Any]:
    """`*_ci_low*`/`*_ci_high*` columns and `noisy` from each repeat's measured successful request rows."""
    rng = np.random.default_rng(seed)
    result = _latency_intervals(rng, repeats) | _throughput_interval(rng, repeats) | _itl_intervals(rng, repeats)
    result["noisy"] = noisy(rng, repeats) if len([r for r in repeats if r]) >= 2 else None
    return result


def noisy(rng: np.random.Generator, repeats: Sequence[Sequence[Row]]) -> bool:
    """Do the repeats' own intervals (of NOISE_STATS) fail to share a common value?"""
    own = [_latency_intervals(rng, [rows]) | _throughput_interval(rng, [rows]) for rows in repeats if rows]
    for stat in NOISE_STATS:
        low, high = _ci_keys(stat)
        lows = [v for i in own if (v := i[low]) is not None]
        highs = [v for i in own if (v := i[high]) is not None]
        if lows and highs and max(lows) > min(highs):
            return True
    return False


def _ci_keys(stat: str) -> tuple[str, str]:
    if stat.endswith("_ms"):
        stem = stat.removesuffix("_ms")
        return f"{stem}_ci_low_ms", f"{stem}_ci_high_ms"
    return f"{stat}_ci_low", f"{stat}_ci_high"


def _latency_intervals(rng: np.random.Generator, repeats: Sequence[Sequence[Row]]) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    for metric in CI_METRICS:
        groups = [np.asarray([r[f"{metric}_ms"] for r in rows if r.get(f"{metric}_ms") is not None], dtype=float)
                  for rows in repeats]
        groups = [g for g in groups if g.size]
        draws = _bootstrap(rng, groups, lambda pool: np.percentile(pool, _QUANTILES)) if groups else None
        for column, stat in enumerate(CI_PERCENTILES):
            low, high = _ci_keys(f"{metric}_{stat}_ms")
            bounds = np.percentile(draws[:, column], _TAILS) if draws is not None else (None, None)
            result[low], result[high] = (float(b) if b is not None else None for b in bounds)
    return result


def _itl_intervals(rng: np.random.Generator, repeats: Sequence[Sequence[Row]]) -> dict[str, float | None]:
    """Pooled-gap percentiles' intervals by a cluster bootstrap: the unit is a request with all its gaps.

    Pooling ~10^6 gaps per resample would be slow, so each request's gaps are counted in shared log bins
    (relative half-width ITL_BIN_ACCURACY) once; a resample's pooled histogram is then the requests' bin
    counts weighted by how often each was drawn, one matrix product for all resamples.
    """
    keys = [f"itl_{stat}_ci_{end}_ms" for stat in CI_PERCENTILES for end in ("low", "high")]
    lists = [[np.asarray(r.get("itl_ms") or (), dtype=float) for r in rows] for rows in repeats]
    lists = [[g[np.isfinite(g)] for g in group] for group in lists]
    lists = [[g for g in group if g.size] for group in lists]
    lists = [group for group in lists if group]
    if not lists:
        return dict.fromkeys(keys)
    gamma = (1 + ITL_BIN_ACCURACY) / (1 - ITL_BIN_ACCURACY)
    floor = 1e-6  # ms; gaps at or below it share bin 0 (loopback reads can be ~0)
    flat = np.concatenate([g for group in lists for g in group])
    bins = np.where(flat > floor, np.ceil(np.log(np.maximum(flat, floor) / floor) / np.log(gamma)), 0).astype(np.int64)
    edges, index = np.unique(bins, return_inverse=True)
    values = np.where(edges > 0, floor * 2 * gamma**edges / (gamma + 1), 0.0)  # each bin's representative
    sizes = [g.size for group in lists for g in group]
    owner = np.repeat(np.arange(len(sizes)), sizes)
    counts = np.zeros((len(sizes), edges.size))
    np.add.at(counts, (owner, index), 1.0)
    starts = np.cumsum([0] + [len(group) for group in lists])
    weights = np.zeros((RESAMPLES, len(sizes)))
    for draw in range(RESAMPLES):
        for group in rng.integers(0, len(lists), len(lists)):
            n = starts[group + 1] - starts[group]
            weights[draw] += np.bincount(starts[group] + rng.integers(0, n, n), minlength=len(sizes))
    cumulative = np.cumsum(weights @ counts, axis=1)
    result: dict[str, float | None] = {}
    for stat, q in zip(CI_PERCENTILES, _QUANTILES, strict=True):
        # numpy's linear-interpolation rank q (n - 1), taken as the bin holding that rank.
        ranks = q / 100 * (cumulative[:, -1] - 1)
        picks = values[np.argmax(cumulative > ranks[:, None], axis=1)]
        low, high = np.percentile(picks, _TAILS)
        result[f"itl_{stat}_ci_low_ms"], result[f"itl_{stat}_ci_high_ms"] = float(low), float(high)
    return result


def _throughput_interval(rng: np.random.Generator, repeats: Sequence[Sequence[Row]]) -> dict[str, float | None]:
    low, high = _ci_keys("output_token_throughput")
    binned = [b for b in (token_bins(rows) for rows in repeats) if b is not None]
    if not binned:
        return {low: None, high: None}
    # Each unit is one bin: (tokens, seconds); a resample's throughput is its tokens over its time.
    groups = [np.column_stack([tokens, np.full(tokens.size, width)]) for tokens, width in binned]
    draws = _bootstrap(rng, groups, lambda pool: np.array([pool[:, 0].sum() / pool[:, 1].sum()]))
    bounds = np.percentile(draws[:, 0], _TAILS)
    return {low: float(bounds[0]), high: float(bounds[1])}


def token_bins(rows: Sequence[Row], bins: int = BINS) -> tuple[np.ndarray, float] | None:
    """Output tokens per equal time bin of the measured window (first send to last end) and the bin width
    (s). A chunk carries output_tokens / chunks tokens at its arrival time."""
    times, weights, start, end = [], [], np.inf, -np.inf
    for row in rows:
        if row.get("ttft_ms") is None or not row.get("output_tokens"):
            continue
        gaps = np.asarray(row.get("itl_ms") or (), dtype=float)
        arrivals = row["sent_at_s"] + (row["ttft_ms"] + np.concatenate([[0.0], np.cumsum(gaps)])) / 1000.0
        times.append(arrivals)
        weights.append(np.full(arrivals.size, row["output_tokens"] / arrivals.size))
        start, end = min(start, row["sent_at_s"]), max(end, row["sent_at_s"] + row["e2e_ms"] / 1000.0)
    if not times or end <= start:
        return None
    tokens, _ = np.histogram(np.concatenate(times), bins=bins, range=(start, end), weights=np.concatenate(weights))
    return tokens, (end - start) / bins


def _bootstrap(rng: np.random.Generator, groups: Sequence[np.ndarray],
               statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """RESAMPLES values of `statistic` over pools drawn at two levels: groups, then units within each."""
    draws = []
    for _ in range(RESAMPLES):
        picked = rng.integers(0, len(groups), len(groups))
        pool = np.concatenate([groups[g][rng.integers(0, len(groups[g]), len(groups[g]))] for g in picked])
        draws.append(statistic(pool))
    return np.asarray(draws)
