"""Pooled latency percentiles across any set of points, from the DDSketch bins stored on each point.

Merging DDSketches of one mapping is adding their bins: DuckDB adds the chosen points' bins key by key over
the `points` table (a few hundred bins a point, never the raw values), and DataDog's ``ddsketch`` library
answers the quantiles from the merged store. Bound (servesweep.lake.sketch): each answer is within
``sketch_relative_accuracy`` (1 %) of the exact pooled value at rank floor(q (n - 1)).

Points written before schema v6 carry no sketch: their bins are built here from their request rows (exact
values, same mapping), so old lakes answer too, at the cost of reading their requests; `servesweep lake
migrate` stores them once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from servesweep.extras import require
from servesweep.lake import query as lake_query
from servesweep.lake import sketch as lake_sketch
from servesweep.lake.schema import LATENCY_METRICS

DEFAULT_QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class Pooled:
    metric: str
    points: int  # points pooled
    points_from_requests: int  # of them, those without a stored sketch (pre-v5), sketched from their requests
    count: int  # values pooled
    relative_accuracy: float
    quantiles: dict[float, float | None]
    mean_ms: float | None


def _filter(where: str | None) -> str:
    return f"({where})" if where else "true"


def _bins_sql(metric: str, where: str | None) -> str:
    chosen = (f"SELECT run_id, point_id, {metric}_sketch AS s, {metric}_mean_ms AS mean, sketch_relative_accuracy "
              f"AS accuracy FROM points WHERE source = 'measured' AND status IN ('ok', 'partial') AND "
              f"{_filter(where)}")
    return f"""
        WITH chosen AS ({chosen}),
        bins AS (SELECT unnest(s.keys) AS key, unnest(s.counts) AS n FROM chosen WHERE s IS NOT NULL)
        SELECT 'bin' AS kind, key, sum(n)::BIGINT AS n, NULL::DOUBLE AS x, NULL::VARCHAR AS run_id,
               NULL::VARCHAR AS point_id FROM bins GROUP BY key
        UNION ALL
        SELECT 'zero', NULL, sum(s.zero_count)::BIGINT, NULL, NULL, NULL FROM chosen WHERE s IS NOT NULL
        UNION ALL
        SELECT 'mean', NULL, (list_sum(s.counts) + s.zero_count)::BIGINT, mean, NULL, NULL FROM chosen
            WHERE s IS NOT NULL
        UNION ALL
        SELECT 'accuracy', NULL, count(*)::BIGINT, accuracy, NULL, NULL FROM chosen WHERE s IS NOT NULL
            GROUP BY accuracy
        UNION ALL
        SELECT 'unsketched', NULL, NULL, NULL, run_id, point_id FROM chosen WHERE s IS NULL
    """


def _unsketched_sql(metric: str, points: Sequence[tuple[str, str]]) -> str:
    pairs = ", ".join(f"({_quote(run)}, {_quote(point)})" for run, point in points)
    column = "itl_ms" if metric == "itl" else f"{metric}_ms"
    return (f"SELECT {column} AS v FROM requests WHERE ok AND NOT warmup AND NOT coalesce(cooldown, false) "
            f"AND (run_id, point_id) IN (SELECT * FROM (VALUES {pairs}))")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def pooled(lake_uri: str, metric: str = "itl", where: str | None = None,
           quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Pooled:
    """Percentiles of `metric` (ttft, tpot, itl or e2e) pooled over the measured, counted points that `where`
    (SQL over `points`, run in servesweep query's sandbox) selects; every point when it is None."""
    if metric not in LATENCY_METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(LATENCY_METRICS)}")
    if any(not 0 <= q <= 1 for q in quantiles):
        raise ValueError("quantiles are fractions in [0, 1]")
    rows = lake_query.query(lake_uri, _bins_sql(metric, where)).to_pylist()
    bins = {int(r["key"]): int(r["n"]) for r in rows if r["kind"] == "bin"}
    zeros = sum(int(r["n"] or 0) for r in rows if r["kind"] == "zero")
    accuracies = {float(r["x"]) for r in rows if r["kind"] == "accuracy"}
    if len(accuracies) > 1 or accuracies - {lake_sketch.RELATIVE_ACCURACY}:
        raise ValueError(f"points sketched with another relative accuracy: {sorted(accuracies)}")
    weighted = [(int(r["n"]), r["x"]) for r in rows if r["kind"] == "mean" and r["x"] is not None]
    unsketched = [(r["run_id"], r["point_id"]) for r in rows if r["kind"] == "unsketched"]
    if unsketched:
        values = _request_values(lake_uri, metric, unsketched)
        extra = lake_sketch.sketch(values)
        if extra is not None:
            for key, n in zip(extra["keys"], extra["counts"], strict=True):
                bins[key] = bins.get(key, 0) + n
            zeros += extra["zero_count"]
            weighted.append((values.size, float(values.mean())))
    merged = _merged([{"keys": list(bins), "counts": list(bins.values()), "zero_count": zeros}])
    count = int(merged.count)
    total = sum(n for n, _ in weighted)
    mean = sum(n * m for n, m in weighted) / total if total else None
    answers = {float(q): (None if count == 0 else float(merged.get_quantile_value(q))) for q in quantiles}
    points = sum(int(r["n"]) for r in rows if r["kind"] == "accuracy") + len(unsketched)
    return Pooled(metric, points, len(unsketched), count, lake_sketch.RELATIVE_ACCURACY, answers,
                  None if mean is None or math.isnan(mean) else mean)


def _merged(sketches: Sequence[dict[str, Any] | None]) -> Any:
    """One ddsketch BaseDDSketch holding the stored sketches (bins of one mapping: merging adds them)."""
    library = require("ddsketch.ddsketch", "sketch", "pooled percentiles")
    mapping_module = require("ddsketch.mapping", "sketch", "pooled percentiles")
    store_module = require("ddsketch.store", "sketch", "pooled percentiles")
    store = store_module.DenseStore()
    zeros = 0.0
    for bins in sketches:
        if bins is None:
            continue
        for key, n in sorted(zip(bins["keys"], bins["counts"], strict=True)):
            store.add(int(key), float(n))
        zeros += float(bins["zero_count"])
    mapping = mapping_module.LogarithmicMapping(lake_sketch.RELATIVE_ACCURACY)
    return library.BaseDDSketch(mapping, store, store_module.DenseStore(), zeros)


def _request_values(lake_uri: str, metric: str, points: Sequence[tuple[str, str]]) -> np.ndarray:
    table = lake_query.query(lake_uri, _unsketched_sql(metric, points))
    column = table["v"]
    if metric == "itl":
        flat = pa.chunked_array([chunk.flatten() for chunk in column.chunks], pa.float32())
        return np.asarray(flat.to_numpy(), np.float64)
    return np.asarray(column.drop_null().to_numpy(), np.float64)


def as_rows(result: Pooled) -> list[dict[str, Any]]:
    return [{"metric": result.metric, "quantile": q, "value_ms": v, "points": result.points,
             "values": result.count, "relative_accuracy": result.relative_accuracy} for q, v in
            result.quantiles.items()]


__all__ = ["DEFAULT_QUANTILES", "Pooled", "as_rows", "pooled"]
