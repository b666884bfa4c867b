"""Fast paths equal exact answers: the pipeline's points rows against DuckDB over the requests, pooled sketches
against exact pooled percentiles, packed gaps against the lists written."""

import numpy as np
import pyarrow as pa

from servesweep.analysis.pooled import pooled
from servesweep.lake import store
from servesweep.lake.query import query
from servesweep.lake.sketch import RELATIVE_ACCURACY
from servesweep.metrics.summary import request_latencies, summarise_requests


def _point_rows(run_id: str, point: str, rng: np.random.Generator, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        out = int(rng.integers(2, 40))
        ok = bool(rng.random() > 0.05)
        times = np.cumsum(rng.lognormal(-4, 0.5, out)) if ok else []
        lat = request_latencies(0.0, list(times), out if ok else None)
        rows.append({"run_id": run_id, "point_id": point, "deployment_id": "d", "request_index": i - 2,
                     "warmup": i < 2, "cooldown": False, "repeat": 0, "ok": ok, "error": None if ok else "HTTP 500",
                     "sent_at_s": i * 0.1, "sent_at_unix": 1.7e9 + i * 0.1, "scheduled_at_s": i * 0.1,
                     "schedule_lag_ms": 0.0, "requested_input_tokens": 8, "requested_output_tokens": out,
                     "input_tokens": 8, "output_tokens": out if ok else None, "output_chunks": out, **lat})
    return rows


def _lake(tmp_path) -> str:
    lake = str(tmp_path / "lake")
    rng = np.random.default_rng(11)
    for run in ("run-a", "run-b"):
        requests, points = [], []
        for p in range(3):
            rows = _point_rows(run, f"p{p}", rng, 150)
            requests += rows
            points.append({"run_id": run, "point_id": f"p{p}", "deployment_id": "d", "source": "measured",
                           "batch_size": 2 ** p, "accelerator": "nvidia-l4" if run == "run-a" else "cpu",
                           **summarise_requests(rows)})
        store.write_run(lake, run, {"requests": store.to_table("requests", requests),
                                    "points": store.to_table("points", points)})
    return lake


def test_points_rows_equal_duckdb_over_requests(tmp_path):
    lake = _lake(tmp_path)
    exact = query(lake, """SELECT run_id, point_id, count(*) FILTER (WHERE NOT ok) AS num_errors,
        quantile_cont(ttft_ms, 0.99) FILTER (WHERE ok) AS ttft_p99_ms, quantile_cont(e2e_ms, 0.5) FILTER (WHERE ok)
        AS e2e_p50_ms, avg(tpot_ms) FILTER (WHERE ok) AS tpot_mean_ms FROM requests WHERE NOT warmup
        GROUP BY ALL ORDER BY ALL""").to_pylist()
    fast = query(lake, "SELECT run_id, point_id, num_errors, ttft_p99_ms, e2e_p50_ms, tpot_mean_ms FROM points "
                       "ORDER BY ALL").to_pylist()
    assert [r["point_id"] for r in exact] == [r["point_id"] for r in fast]
    for a, b in zip(exact, fast, strict=True):
        assert a["num_errors"] == b["num_errors"]
        for column in ("ttft_p99_ms", "e2e_p50_ms", "tpot_mean_ms"):  # requests store float32 ms
            assert abs(a[column] - b[column]) <= 1e-6 * abs(b[column])


def test_pooled_sketches_within_bound_of_exact_for_any_set(tmp_path):
    lake = _lake(tmp_path)
    for metric, column in (("itl", "unnest(itl_ms)"), ("ttft", "ttft_ms"), ("e2e", "e2e_ms")):
        for where, rwhere in ((None, "true"), ("accelerator = 'cpu'", "run_id = 'run-b'"),
                              ("point_id = 'p1'", "point_id = 'p1'")):
            exact = np.sort(query(lake, f"SELECT {column} AS v FROM requests WHERE ok AND NOT warmup AND {rwhere}")
                            ["v"].to_numpy().astype(np.float64))
            result = pooled(lake, metric, where, (0.5, 0.9, 0.99, 1.0))
            assert result.count == exact.size and result.points_from_requests == 0
            assert abs(result.mean_ms - exact.mean()) <= 1e-5 * exact.mean()
            for q, got in result.quantiles.items():
                lo = exact[int(np.floor(q * (exact.size - 1)))]
                assert abs(got - lo) <= RELATIVE_ACCURACY * lo, (metric, where, q)


def test_packed_gaps_read_back_as_written(tmp_path):
    lake = str(tmp_path / "lake")
    rows = _point_rows("run-a", "p0", np.random.default_rng(2), 40)
    rows[3]["itl_ms"] = None
    store.write_run(lake, "run-a", {"requests": store.to_table("requests", rows)})
    expected = [None if r["itl_ms"] is None else np.float32(r["itl_ms"]).tolist() for r in rows]
    table = store.read_table(lake, "requests", ["run-a"])
    assert table.schema.field("itl_ms").type == pa.list_(pa.float32())
    assert table["itl_ms"].to_pylist() == expected
    via_sql = query(lake, "SELECT itl_ms FROM requests ORDER BY request_index")["itl_ms"].to_pylist()
    assert via_sql == expected
    assert "itl_ms_packed" not in query(lake, "SELECT * FROM requests LIMIT 1").column_names
