"""make bench-lake: servesweep's lake at fleet scale against plain pyarrow / DuckDB on the same files.

Writes benchmarks/lake/RESULTS.md and results.json. Every figure is measured in this run (best of a few
repeats where cheap); the shape is set by --runs/--points/--requests (default 100 x 50 x 2000 = 10 M rows)."""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from benchmarks.gcs_emulator import start_emulator
from benchmarks.lake.synth import Shape, run_tables
from servesweep.analysis import pooled as pooled_mod
from servesweep.analysis import views
from servesweep.lake import store
from servesweep.lake.schema import SCHEMAS

HERE = Path(__file__).resolve().parent
SUMMARY_COLUMNS = ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "e2e_p99_ms")
QS = (0.5, 0.9, 0.99)


def best(call: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return min(times), result


def templates(shape: Shape, count: int) -> list[dict[str, pa.Table]]:
    return [run_tables(Shape(1, shape.points, shape.requests), i) for i in range(count)]


def as_run(template: dict[str, pa.Table], run: int) -> dict[str, pa.Table]:
    """A template's tables under another run id and config (runs differ in model and accelerator)."""
    from benchmarks.lake.synth import ACCELERATORS, MODELS
    run_id = f"fleet-{run:05d}"
    out = {}
    for name, table in template.items():
        table = table.set_column(0, "run_id", pa.array([run_id] * len(table), pa.string()))
        if name == "points":
            for column, value in (("model_name", MODELS[run % len(MODELS)]),
                                  ("accelerator", ACCELERATORS[(run // 2) % len(ACCELERATORS)])):
                table = table.set_column(table.column_names.index(column), column, pa.array([value] * len(table)))
        out[name] = store.to_table(name, table)
    return out


# --- write ---------------------------------------------------------------------------------------------------

def write_options(template: dict[str, pa.Table], work: Path) -> list[dict[str, Any]]:
    """One run's requests written every way: what chose store.WriteOptions."""
    table = template["requests"]
    packed = store.storage_form("requests", table)
    listed = table.drop_columns(["run_id", "itl_ms_packed"])
    rows = []
    for gaps, data in (("list<float32> (v4)", listed), ("packed (v5)", packed)):
        for compression in ("none", "snappy", "lz4", "zstd"):
            for group in (64 * 1024, 256 * 1024, 1024 * 1024):
                if gaps.startswith("list") and group != 256 * 1024:
                    continue
                options = store.WriteOptions(compression=compression, row_group_size=group)
                path = work / "options.parquet"

                def write(options: store.WriteOptions = options, data: pa.Table = data, path: Path = path) -> None:
                    with open(path, "wb") as out:
                        options.write(data, out)
                seconds, _ = best(write, 2)
                rows.append({"gaps": gaps, "compression": compression, "row_group_rows": group,
                             "rows_per_s": len(data) / seconds, "mb": path.stat().st_size / 1e6})
    return rows


def write_lake(shape: Shape, tmpl: list[dict[str, pa.Table]], lake: str, plain: Path) -> dict[str, Any]:
    ours = plain_s = 0.0
    rows = 0
    for run in range(shape.runs):
        tables = as_run(tmpl[run % len(tmpl)], run)
        rows += len(tables["requests"])
        start = time.perf_counter()
        store.write_run(lake, f"fleet-{run:05d}", tables)
        ours += time.perf_counter() - start
        # Plain pyarrow, defaults, the same rows (gaps as the list column), into the same layout.
        folder = plain / "requests" / f"run_id=fleet-{run:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = tables["requests"].drop_columns(["run_id", "itl_ms_packed"])
        start = time.perf_counter()
        with open(folder / "part-0.parquet", "wb") as out:
            pq.write_table(data, out)
            out.flush()
            os.fsync(out.fileno())
        plain_s += time.perf_counter() - start
        pfolder = plain / "points" / f"run_id=fleet-{run:05d}"
        pfolder.mkdir(parents=True, exist_ok=True)
        pq.write_table(tables["points"].drop_columns(["run_id"]), pfolder / "part-0.parquet")
    return {"rows": rows, "ours_s": ours, "plain_s": plain_s, "ours_rows_per_s": rows / ours,
            "plain_rows_per_s": rows / plain_s, "ours_gb": _size(Path(lake) / "requests"),
            "plain_gb": _size(plain / "requests")}


def _size(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*.parquet")) / 1e9


# --- read --------------------------------------------------------------------------------------------------

def plain_connection(files: str) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(f"CREATE VIEW requests AS SELECT * FROM read_parquet('{files}/requests/*/*.parquet', "
                       "hive_partitioning = true)")
    connection.execute(f"CREATE VIEW points AS SELECT * FROM read_parquet('{files}/points/*/*.parquet', "
                       "hive_partitioning = true, union_by_name = true)")
    # The synthetic fleet has no fingerprints or accuracy rows; the views join them, so both sides see them empty.
    for table in ("runs", "accuracy"):
        connection.register(table, SCHEMAS[table].empty_table())
    return connection


EXACT_SUMMARY = """
    SELECT run_id, point_id, count(*) AS num_requests, count(*) FILTER (WHERE NOT ok) AS num_errors,
           quantile_cont(ttft_ms, 0.5) FILTER (WHERE ok) AS ttft_p50_ms,
           quantile_cont(ttft_ms, 0.99) FILTER (WHERE ok) AS ttft_p99_ms,
           quantile_cont(tpot_ms, 0.5) FILTER (WHERE ok) AS tpot_p50_ms,
           quantile_cont(tpot_ms, 0.99) FILTER (WHERE ok) AS tpot_p99_ms,
           quantile_cont(e2e_ms, 0.99) FILTER (WHERE ok) AS e2e_p99_ms
    FROM requests WHERE NOT warmup AND NOT coalesce(cooldown, false)
    GROUP BY run_id, point_id ORDER BY run_id, point_id"""
FAST_SUMMARY = ("SELECT run_id, point_id, num_requests, num_errors, " + ", ".join(SUMMARY_COLUMNS)
                + " FROM points ORDER BY run_id, point_id")


def summaries(lake: str, plain: Path) -> dict[str, Any]:
    connection = plain_connection(str(plain))
    plain_s, exact = best(lambda: connection.sql(EXACT_SUMMARY).to_arrow_table(), 2)
    fast_s, fast = best(lambda: views.query(lake, FAST_SUMMARY))
    exact_d, fast_d = exact.to_pydict(), fast.to_pydict()
    assert exact_d["point_id"] == fast_d["point_id"] and exact_d["num_requests"] == fast_d["num_requests"]
    worst = max(abs(a - b) / abs(a) for c in SUMMARY_COLUMNS for a, b in zip(exact_d[c], fast_d[c], strict=True))
    return {"plain_s": plain_s, "ours_s": fast_s, "points": len(fast), "max_relative_difference": worst}


def view_times(lake: str, plain: Path) -> list[dict[str, Any]]:
    connection = plain_connection(str(plain))
    views.create_views(connection)
    rows = []
    for name in views.VIEWS:
        plain_s, expected = best(lambda name=name: connection.sql(f"SELECT * FROM {name}").to_arrow_table())
        ours_s, got = best(lambda name=name: views.query(lake, f"SELECT * FROM {name}"))
        rows.append({"view": name, "rows": len(got), "plain_s": plain_s, "ours_s": ours_s,
                     "same_rows": len(got) == len(expected)})
    return rows


def pooled_times(lake: str, plain: Path, subset_runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, where in (("all points", None), ("one accelerator", "accelerator = 'nvidia-h100-80gb'")):
        seconds, result = best(lambda where=where: pooled_mod.pooled(lake, "itl", where, QS), 2)
        out[label] = {"s": seconds, "points": result.points, "values": result.count,
                      "quantiles": {str(q): v for q, v in result.quantiles.items()}}
    runs = [f"fleet-{r:05d}" for r in range(subset_runs)]
    where = "run_id IN (" + ", ".join(f"'{r}'" for r in runs) + ")"
    sketch_s, result = best(lambda: pooled_mod.pooled(lake, "itl", where, QS), 2)
    connection = plain_connection(str(plain))
    run_list = ", ".join(f"'{r}'" for r in runs)
    duck_sql = (f"SELECT quantile_cont(g, {list(QS)}) AS q, count(*) AS n FROM (SELECT unnest(itl_ms) AS g FROM "
                f"requests WHERE ok AND NOT warmup AND run_id IN ({run_list}))")
    duck_s, duck = best(lambda: connection.sql(duck_sql).fetchall(), 1)

    def numpy_exact() -> np.ndarray:
        paths = [str(p) for r in runs for p in (Path(lake) / "requests" / f"run_id={r}").glob("*.parquet")]
        table = ds.dataset(paths, format="parquet").to_table(columns=["itl_ms_packed", "ok", "warmup"])
        packed = table.filter(ds.field("ok") & ~ds.field("warmup"))["itl_ms_packed"].combine_chunks()
        buffers = packed.buffers()
        offsets = np.frombuffer(buffers[1], np.int64)[packed.offset: packed.offset + len(packed) + 1]
        values = np.frombuffer(buffers[2], "<f4")[offsets[0] // 4: offsets[-1] // 4]
        return np.asarray(values, np.float64)
    numpy_s, gaps = best(numpy_exact, 1)
    exact = np.percentile(gaps, [q * 100 for q in QS])
    sorted_gaps = np.sort(gaps)
    ranks = [q * (len(gaps) - 1) for q in QS]
    order_stat = [float(sorted_gaps[int(np.floor(r))]) for r in ranks]
    errors = [abs(result.quantiles[q] - x) / x for q, x in zip(QS, order_stat, strict=True)]
    assert result.count == len(gaps) == duck[0][1]
    out["subset"] = {"runs": subset_runs, "values": len(gaps), "sketch_s": sketch_s, "duckdb_exact_s": duck_s,
                     "pyarrow_numpy_exact_s": numpy_s, "exact": exact.tolist(),
                     "sketch": [result.quantiles[q] for q in QS],
                     "relative_error_vs_rank_value": errors, "bound": result.relative_accuracy}
    return out


def pruning(lake: str, plain: Path) -> dict[str, Any]:
    sql = "SELECT count(*), avg(ttft_ms), max(e2e_ms) FROM requests WHERE run_id = 'fleet-00007'"
    connection = plain_connection(str(plain))
    plain_s, _ = best(lambda: connection.sql(sql).fetchall())
    ours_s, _ = best(lambda: views.query(lake, sql))
    point_sql = ("SELECT model_name, accelerator, max(output_token_throughput) FROM points WHERE model_name = "
                 "'llama3-70b' AND accelerator = 'nvidia-l4' GROUP BY ALL")
    plain_p, _ = best(lambda: connection.sql(point_sql).fetchall())
    ours_p, _ = best(lambda: views.query(lake, point_sql))
    return {"one_run_requests": {"plain_s": plain_s, "ours_s": ours_s},
            "model_and_accelerator_points": {"plain_s": plain_p, "ours_s": ours_p}}


def compaction(lake: str) -> dict[str, Any]:
    before = {name: best(lambda name=name: views.query(lake, f"SELECT * FROM {name}"))[0]
              for name in ("point_costs", "ideal_batch")}
    start = time.perf_counter()
    store.compact(lake)
    took = time.perf_counter() - start
    after = {name: best(lambda name=name: views.query(lake, f"SELECT * FROM {name}"))[0]
             for name in ("point_costs", "ideal_batch")}
    return {"compact_s": took, "before_s": before, "after_s": after}


# --- gs:// ---------------------------------------------------------------------------------------------------

def _proxy(target: int, server: socket.socket, counter: Any) -> None:
    def pipe(source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if count:
                    with counter.get_lock():
                        counter.value += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", target))
        threading.Thread(target=pipe, args=(client, upstream, False), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client, True), daemon=True).start()


class CountingProxy:
    """A TCP proxy in front of the GCS emulator, in its own process, counting the bytes the emulator sends
    back: what a query read from the bucket (HTTP framing included)."""

    def __init__(self, target: int) -> None:
        self.counter = multiprocessing.Value("q", 0)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        self.port = server.getsockname()[1]
        self.process = multiprocessing.get_context("fork").Process(target=_proxy, args=(target, server, self.counter),
                                                                   daemon=True)
        self.process.start()
        server.close()

    def take(self) -> int:
        with self.counter.get_lock():
            value, self.counter.value = self.counter.value, 0
        return int(value)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


def gcs(shape: Shape, tmpl: list[dict[str, pa.Table]]) -> dict[str, Any]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 (open while the emulator runs; closed below)
    process, port = start_emulator(log)
    try:
        proxy = CountingProxy(port)
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{proxy.port}"
        lake = "gs://lake/fleet"
        rows = 0
        start = time.perf_counter()
        for run in range(shape.runs):
            tables = as_run(tmpl[run % len(tmpl)], run)
            rows += len(tables["requests"])
            store.write_run(lake, f"fleet-{run:05d}", tables)
        write_s = time.perf_counter() - start
        proxy.take()
        results: dict[str, Any] = {"rows": rows, "runs": shape.runs, "write_s": write_s}

        def measure(label: str, call: Callable[[], Any]) -> None:
            proxy.take()
            start = time.perf_counter()
            try:
                call()
            except Exception as error:  # noted in the report; the other queries still run
                results[label] = {"s": time.perf_counter() - start, "bytes": proxy.take(),
                                  "error": f"{type(error).__name__}: {error}"[:160]}
                return
            results[label] = {"s": time.perf_counter() - start, "bytes": proxy.take()}

        fs = pafs.GcsFileSystem(anonymous=True, endpoint_override=f"127.0.0.1:{proxy.port}", scheme="http")

        def plain_points() -> None:
            files = [i.path for i in fs.get_file_info(pafs.FileSelector("lake/fleet/points", recursive=True))
                     if i.path.endswith(".parquet") and "/run_id=" in i.path]
            data = ds.dataset(files, filesystem=fs, format="parquet",
                              partitioning=ds.partitioning(flavor="hive"), partition_base_dir="lake/fleet/points")
            connection = duckdb.connect()
            connection.register("points", data)
            connection.sql(FAST_SUMMARY).fetchall()

        measure("plain: per-point summary, DuckDB over a pyarrow dataset of the points files", plain_points)
        measure("per-point summary (points)", lambda: views.query(lake, FAST_SUMMARY))
        for name in ("point_costs", "ideal_batch", "pareto_frontier"):
            measure(f"view {name}", lambda name=name: views.query(lake, f"SELECT * FROM {name}"))
        measure("pooled ITL percentiles (sketches)", lambda: pooled_mod.pooled(lake, "itl", None, QS))
        measure("one run's requests (partition pruning)", lambda: views.query(
            lake, "SELECT count(*), avg(ttft_ms) FROM requests WHERE run_id = 'fleet-00003'"))
        measure("compaction", lambda: store.compact(lake))
        measure("per-point summary after compaction", lambda: views.query(lake, FAST_SUMMARY))
        measure("view point_costs after compaction", lambda: views.query(lake, "SELECT * FROM point_costs"))
        measure("pooled ITL percentiles after compaction", lambda: pooled_mod.pooled(lake, "itl", None, QS))
        proxy.stop()
        return results
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


# --- report --------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--templates", type=int, default=4)
    parser.add_argument("--subset-runs", type=int, default=5, help="runs of the exact pooled baseline")
    parser.add_argument("--gcs-runs", type=int, default=4)
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--gcs-only", action="store_true", help="redo the gs:// part of an existing results.json")
    parser.add_argument("--only", default="", help="comma-separated parts to measure again into an existing "
                        f"results.json ({', '.join(PARTS)}); the lake is written either way")
    args = parser.parse_args()
    if args.only:
        _measure_again(args, [p.strip() for p in args.only.split(",") if p.strip()])
        return
    if args.gcs_only:
        out = Path(args.out)
        results = json.loads((out / "results.json").read_text())
        tmpl = templates(Shape(1, args.points, args.requests), args.templates)
        results["gcs"] = gcs(Shape(args.gcs_runs, args.points, args.requests), tmpl)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
        (out / "RESULTS.md").write_text(report(results))
        print(report(results))
        return
    shape = Shape(args.runs, args.points, args.requests)
    work = Path(args.work or tempfile.mkdtemp(prefix="servesweep-bench-lake-"))
    lake, plain = str(work / "lake"), work / "plain"
    results: dict[str, Any] = {"shape": shape.__dict__, "cpus": os.cpu_count(), "pyarrow": pa.__version__,
                               "duckdb": duckdb.__version__}
    try:
        step = time.perf_counter()
        tmpl = templates(shape, args.templates)
        print(f"templates {time.perf_counter() - step:.1f}s", flush=True)
        results["write_options"] = write_options(tmpl[0], work)
        results["write"] = write_lake(shape, tmpl, lake, plain)
        print("write", results["write"], flush=True)
        results["summary"] = summaries(lake, plain)
        print("summary", results["summary"], flush=True)
        results["views"] = view_times(lake, plain)
        results["pruning"] = pruning(lake, plain)
        results["pooled"] = pooled_times(lake, plain, args.subset_runs)
        print("pooled", results["pooled"], flush=True)
        results["compaction"] = compaction(lake)
        shutil.rmtree(work, ignore_errors=True)
        try:
            results["gcs"] = gcs(Shape(args.gcs_runs, shape.points, shape.requests), tmpl)
        except Exception as error:  # the local figures still get written; the report says what failed
            results["gcs"] = {"error": f"{type(error).__name__}: {error}"[:500]}
        print("gcs", results["gcs"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out / "RESULTS.md").write_text(report(results))
    print((out / "RESULTS.md").read_text())


PARTS = ("write", "summary", "views", "pruning", "pooled", "compaction")


def _measure_again(args: argparse.Namespace, parts: list[str]) -> None:
    """Re-measure some parts on a freshly written lake of the same shape; the rest of results.json stays."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"error: --only: unknown parts {unknown}; known: {', '.join(PARTS)}")
    out = Path(args.out)
    results = json.loads((out / "results.json").read_text())
    shape = Shape(args.runs, args.points, args.requests)
    work = Path(args.work or tempfile.mkdtemp(prefix="servesweep-bench-lake-"))
    lake, plain = str(work / "lake"), work / "plain"
    try:
        written = write_lake(shape, templates(shape, args.templates), lake, plain)
        measured = {"write": lambda: written, "summary": lambda: summaries(lake, plain),
                    "views": lambda: view_times(lake, plain), "pruning": lambda: pruning(lake, plain),
                    "pooled": lambda: pooled_times(lake, plain, args.subset_runs),
                    "compaction": lambda: compaction(lake)}
        for part in parts:
            results[part] = measured[part]()
            print(part, results[part], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["remeasured"] = sorted(set(results.get("remeasured", [])) | set(parts))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out / "RESULTS.md").write_text(report(results))
    print((out / "RESULTS.md").read_text())


def _r(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def report(r: dict[str, Any]) -> str:
    s, w = r["shape"], r["write"]
    lines = ["<!-- Written by `make bench-lake` (benchmarks/lake/run_bench.py); numbers measured in that run. -->", "",
             "# The lake at fleet scale", "",
             f"{w['rows']:,} request rows ({s['runs']} runs x {s['points']} points x {s['requests']} requests, "
             f"~{s['mean_output_tokens']} output tokens each: the gaps lists hold "
             f"{r['pooled']['all points']['values']:,} values) on {r['cpus']} CPUs; pyarrow {r['pyarrow']}, "
             f"DuckDB {r['duckdb']}. Plain = pyarrow / DuckDB with their defaults on the same rows or files in the "
             "same run. Times are the best of 2-3 repeats (writes: one pass, fsynced, both sides)."
             + (f" Parts measured again later (`--only`, on a fresh lake of the same shape; every ratio still "
                f"compares two sides of one run): {', '.join(r['remeasured'])}." if r.get("remeasured") else ""),
             "",
             "## Targets", "", "| target | servesweep | plain | ratio | met |", "|---|---|---|---|---|"]
    views_worst = max(v["ours_s"] for v in r["views"])
    sub = r["pooled"]["subset"]
    lines += [
        f"| write >= 1 M request rows/s | {w['ours_rows_per_s'] / 1e6:.2f} M rows/s ({w['ours_s']:.1f} s, "
        f"{w['ours_gb']:.2f} GB) | {w['plain_rows_per_s'] / 1e6:.2f} M rows/s ({w['plain_s']:.1f} s, "
        f"{w['plain_gb']:.2f} GB) | {_r(w['ours_rows_per_s'], w['plain_rows_per_s'])} | "
        f"{'yes' if w['ours_rows_per_s'] >= 1e6 else 'no'} |",
        f"| per-point summary < 1 s | {r['summary']['ours_s']:.3f} s (points rows) | {r['summary']['plain_s']:.2f} s "
        f"(group-by over requests) | {_r(r['summary']['plain_s'], r['summary']['ours_s'])} faster | "
        f"{'yes' if r['summary']['ours_s'] < 1 else 'no'} |",
        f"| every analysis view < 1 s | slowest {views_worst:.3f} s | see below | | "
        f"{'yes' if views_worst < 1 else 'no'} |",
        f"| pooled percentiles < 5 s | {r['pooled']['all points']['s']:.3f} s over all "
        f"{r['pooled']['all points']['points']} points | exact over {sub['runs']} runs only: DuckDB "
        f"{sub['duckdb_exact_s']:.1f} s, pyarrow+numpy {sub['pyarrow_numpy_exact_s']:.1f} s (sketch there: "
        f"{sub['sketch_s']:.3f} s) | {_r(sub['duckdb_exact_s'], sub['sketch_s'])} vs DuckDB on the subset | "
        f"{'yes' if r['pooled']['all points']['s'] < 5 else 'no'} |",
        "", f"Per-point summary: the points rows equal DuckDB's exact group-by ({r['summary']['points']} points; "
        f"largest relative difference {r['summary']['max_relative_difference']:.2e}, float32 rounding of the "
        "stored request latencies).", "",
        "## Write options (one run's requests; chose store.WriteOptions)", "",
        "| gaps | compression | row group rows | M rows/s | MB |", "|---|---|---|---|---|"]
    lines += [f"| {o['gaps']} | {o['compression']} | {o['row_group_rows']:,} | {o['rows_per_s'] / 1e6:.2f} | "
              f"{o['mb']:.0f} |" for o in r["write_options"]]
    lines += ["", "## Analysis views (every one; plain = the same SQL over the points files read by DuckDB)", "",
              "| view | rows | servesweep s | plain s | ratio |", "|---|---|---|---|---|"]
    lines += [f"| {v['view']} | {v['rows']} | {v['ours_s']:.3f} | {v['plain_s']:.3f} | "
              f"{_r(v['ours_s'], v['plain_s'])} |" for v in r["views"]]
    p = r["pruning"]
    lines += ["", "## Partition pruning", "", "| query | servesweep s | plain s |", "|---|---|---|",
              f"| one run's requests (run_id filter) | {p['one_run_requests']['ours_s']:.3f} | "
              f"{p['one_run_requests']['plain_s']:.3f} |",
              f"| points of one model and accelerator | {p['model_and_accelerator_points']['ours_s']:.3f} | "
              f"{p['model_and_accelerator_points']['plain_s']:.3f} |", "",
              "## Pooled ITL percentiles (DDSketch, relative accuracy "
              f"{sub['bound']:.0%})", "", "| set | points | gaps | s | p50 | p90 | p99 |",
              "|---|---|---|---|---|---|---|"]
    for label in ("all points", "one accelerator"):
        x = r["pooled"][label]
        lines.append(f"| {label} | {x['points']} | {x['values']:,} | {x['s']:.3f} | "
                     + " | ".join(f"{x['quantiles'][str(q)]:.3f}" for q in QS) + " |")
    lines += ["", f"Against exact over {sub['runs']} runs ({sub['values']:,} gaps): exact "
              + ", ".join(f"p{int(q * 100)} {e:.3f}" for q, e in zip(QS, sub["exact"], strict=True))
              + "; sketch " + ", ".join(f"{v:.3f}" for v in sub["sketch"]) + "; relative error against the value "
              "at rank floor(q (n-1)): " + ", ".join(f"{e:.4f}" for e in sub["relative_error_vs_rank_value"])
              + f" (bound {sub['bound']}).", ""]
    c = r["compaction"]
    lines += ["## Compaction (local)", "", f"compact: {c['compact_s']:.2f} s. "
              + "; ".join(f"{k}: {c['before_s'][k]:.3f} s before, {c['after_s'][k]:.3f} s after"
                          for k in c["before_s"]),
              ""]
    g = r["gcs"]
    if "error" in g:
        return "\n".join(lines + ["## gs:// lake", "", f"failed: {g['error']}"]) + "\n"
    lines += [f"## gs:// lake (GCS emulator, {g['rows']:,} rows in {g['runs']} runs; bytes = what the emulator "
              "sent back, counted by a proxy)", "", f"write: {g['rows'] / g['write_s'] / 1e6:.2f} M rows/s "
              "(the emulator is a single-threaded Python server)", "", "| query | s | MB read |", "|---|---|---|"]
    lines += [f"| {k} | {v['s']:.3f} | {v['bytes'] / 1e6:.2f} |" + (f" failed: {v['error']}" if "error" in v else "")
              for k, v in g.items() if isinstance(v, dict)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
