"""The whole KFP pipeline on KFP's local runner against the real vLLM CPU server.

Nothing here is mocked: if vLLM cannot start, the test fails (it never skips).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from pipelines.local import run_locally
from servesweep.lake.query import query
from servesweep.outcome import PARTIAL
from servesweep.spec import BenchmarkSpec, SweepSpec, WorkloadShape
from tests.support.paths import REPO

ROOT = REPO

pytestmark = pytest.mark.server

INPUT, OUTPUT = 48, 24
REQUESTS = 16  # per point: enough loop-lag probes that one hiccup of a shared machine is not the p99


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, gcs_emulator):
    """One run: client-concurrency sweep over batch sizes 1 and 3 plus a server-cap deployment, to gs://."""
    root = tmp_path_factory.mktemp("pipeline")
    (root / "tmp").mkdir()
    spec = BenchmarkSpec(
        name="it", run_id="it-run", lake_uri="gs://lake/it",
        workloads=[WorkloadShape(input_tokens=INPUT, output_tokens=OUTPUT)],
        sweep=SweepSpec(batch_sizes=[1, 3], modes=["client_concurrency"], requests_per_point=REQUESTS,
                        warmup_requests=1, warmup_s=0.3, scrape_interval_s=0.2),
    )
    previous, tempfile.tempdir = tempfile.tempdir, str(root / "tmp")  # where the run's server state goes
    try:
        lake = run_locally(spec, root / "kfp")
    finally:
        tempfile.tempdir = previous
    return spec, lake, root


def test_the_server_state_is_removed_and_its_log_kept(pipeline_run):
    _, _, root = pipeline_run
    assert list((root / "tmp").glob("servesweep-servers-*")) == []
    log = root / "kfp" / "it-run-servers" / "server-cc.log"
    assert "Starting vLLM server on" in log.read_text()
    assert f"server logs: {log.parent}" in (root / "kfp" / "it-run.log").read_text()


def test_lake_has_every_point_and_request(pipeline_run):
    spec, lake, _ = pipeline_run
    points = query(lake, "select * from points where source = 'measured' order by batch_size").to_pylist()
    assert [p["batch_size"] for p in points] == [1, 3]
    for point in points:
        assert point["status"] == "ok", point["failure_reason"]
        assert point["num_requests"] == REQUESTS and point["num_errors"] == 0
        assert point["server_kind"] == "vllm" and point["server_max_num_seqs"] == 3
        assert point["server_start_s"] > 0 and point["model_parameters"] > 0
        assert point["output_token_throughput"] > 0 and point["ttft_p50_ms"] > 0
        assert point["ttft_p50_ms"] <= point["ttft_p99_ms"] <= point["e2e_p99_ms"]
        assert point["running_requests_max"] is not None and point["running_requests_max"] <= 3
    predicted = query(lake, "select count(*) as n from points where source = 'predicted'").to_pylist()
    assert predicted == [{"n": 2}]


def test_token_totals_equal_requested_lengths(pipeline_run):
    _, lake, _ = pipeline_run
    totals = query(lake, """
        select count(*) as n, sum(input_tokens) as input, sum(output_tokens) as output,
               bool_and(ok) as all_ok, min(output_chunks) as min_chunks
        from requests where not warmup""").to_pylist()[0]
    assert totals["n"] == 2 * REQUESTS and totals["all_ok"]
    assert totals["input"] == 2 * REQUESTS * INPUT and totals["output"] == 2 * REQUESTS * OUTPUT
    assert totals["min_chunks"] >= 1


def test_request_timestamps_are_monotonic(pipeline_run):
    _, lake, _ = pipeline_run
    rows = query(lake, "select * from requests where not warmup").to_pylist()
    for row in rows:
        assert 0 < row["ttft_ms"] <= row["e2e_ms"]
        assert all(gap >= 0 for gap in row["itl_ms"])
        assert row["tpot_ms"] == pytest.approx((row["e2e_ms"] - row["ttft_ms"]) / (OUTPUT - 1))
    by_point: dict[str, list[float]] = {}
    for row in sorted(rows, key=lambda r: r["request_index"]):
        by_point.setdefault(row["point_id"], []).append(row["sent_at_unix"])
    for sends in by_point.values():
        assert sends == sorted(sends)


def test_server_metrics_cover_the_points(pipeline_run):
    _, lake, _ = pipeline_run
    rows = query(lake, """
        select point_id, count(*) as samples, max(value) as peak from server_metrics
        where metric = 'vllm:num_requests_running' and point_id is not null
        group by point_id order by point_id""").to_pylist()
    assert [r["point_id"] for r in rows] == ["cc-b1-i48-o24", "cc-b3-i48-o24"]
    assert all(r["samples"] >= 1 for r in rows)
    scraped = query(lake, "select min(scraped_at_unix) as first, max(scraped_at_unix) as last from server_metrics")
    first, last = scraped.to_pylist()[0].values()
    assert first < last


def test_no_point_is_flagged_client_limited_with_the_sampler_on(pipeline_run):
    """Scraping every 0.2 s parses vLLM's whole /metrics page: in the load generator's process each parse
    stalled its loop and flagged the points; in the sampler's own process none is flagged (the timed warm-up
    keeps the opening burst, whose later slots wait for the CPU on 2 cores, out of the schedule lag)."""
    _, lake, _ = pipeline_run
    rows = query(lake, """
        select p.point_id, any_value(p.client_limited) as client_limited, count(m.metric) as samples,
               any_value(p.client_loop_lag_p99_ms) as loop_lag, any_value(p.schedule_lag_p99_ms) as schedule_lag,
               any_value(p.client_read_lag_p99_ms) as read_lag
        from points p join server_metrics m using (run_id, point_id)
        where p.source = 'measured' group by p.point_id order by p.point_id""").to_pylist()
    assert [r["point_id"] for r in rows] == ["cc-b1-i48-o24", "cc-b3-i48-o24"]
    assert all(r["samples"] > 0 for r in rows)
    assert [r["client_limited"] for r in rows] == [False, False], rows


def test_the_run_carries_its_fingerprint(pipeline_run):
    from servesweep.fingerprint import git_state, spec_hash

    spec, lake, _ = pipeline_run
    (run,) = query(lake, "select * from runs").to_pylist()
    assert run["run_id"] == "it-run" and run["spec_hash"] == spec_hash(spec)
    assert run["server_kind"] == "vllm" and run["server_version"] == "0.32.0"
    assert run["server_version_source"] == "GET /version"  # asked of the server, not read from a package
    assert run["git_commit"] == git_state()[0] and len(run["git_commit"]) == 40
    assert run["host_cpu_count"] == os.cpu_count() and run["python_version"] == sys.version.split()[0]
    assert run["gpu_name"] is None and run["server_image"] is None
    assert "gpu_*, cuda_driver_version: accelerator cpu" in run["notes"]


def test_duckdb_query_joins_points_and_requests(pipeline_run):
    _, lake, _ = pipeline_run
    rows = query(lake, """
        select p.batch_size, count(r.request_index) as requests, round(avg(r.ttft_ms), 3) as mean_ttft,
               round(any_value(p.ttft_mean_ms), 3) as point_mean_ttft
        from points p join requests r using (run_id, point_id)
        where not r.warmup group by p.batch_size order by p.batch_size""").to_pylist()
    assert [r["requests"] for r in rows] == [REQUESTS, REQUESTS]
    assert all(r["mean_ttft"] == r["point_mean_ttft"] for r in rows)


def test_no_server_left_running(pipeline_run):
    _, _, root = pipeline_run
    outputs = [json.loads(path.read_text()) for path in root.rglob("deploy-server/executor_output.json")]
    pids = [json.loads(output["parameterValues"]["Output"])["pid"] for output in outputs]
    assert pids, "no deploy-server output found"
    alive = [pid for pid in pids if _alive(pid)]
    for pid in alive:  # leave the machine clean even though the test fails
        os.killpg(pid, signal.SIGKILL)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie has exited
    except OSError:
        return False


def test_a_server_that_cannot_start_becomes_failed_points(tmp_path):
    spec = BenchmarkSpec(
        name="broken", run_id="broken-run", lake_uri=str(tmp_path / "lake"),
        server={"extra_args": ["--no-such-flag"], "startup_timeout_s": 120},
        sweep=SweepSpec(batch_sizes=[1], requests_per_point=2),
    )
    lake = run_locally(spec, tmp_path / "kfp")
    points = query(lake, "select status, failure_reason from points where source = 'measured'").to_pylist()
    assert len(points) == 1 and points[0]["status"] == "failed"
    assert "server start" in points[0]["failure_reason"] and "no-such-flag" in points[0]["failure_reason"]


def test_salvage_republishes_the_same_run(pipeline_run):
    """What `servesweep salvage` rebuilds from the task folders equals what the pipeline wrote."""
    from pipelines.salvage import latest_run_dir, salvage

    _, lake, root = pipeline_run
    columns = "point_id, source, status, num_requests, output_token_throughput, ttft_p99_ms"
    before = query(lake, f"select {columns} from points order by point_id").to_pylist()
    salvaged_lake, run_id, written = salvage(latest_run_dir(root / "kfp"))
    assert (salvaged_lake, run_id) == (lake, "it-run")
    requests = query(lake, "select count(*) filter (where not warmup) as measured, count(*) as n from requests")
    assert requests.to_pylist()[0]["measured"] == 2 * REQUESTS
    assert written["points"] == len(before) and written["requests"] == requests.to_pylist()[0]["n"]
    assert written["runs"] == 1
    assert query(lake, f"select {columns} from points order by point_id").to_pylist() == before


def test_a_server_killed_mid_sweep_keeps_what_was_measured_and_exits_partial(tmp_path):
    """`servesweep run` as a user runs it; the server's process group is killed once the first point is saved.
    The breaker (2 failures in a row) stops each later point: failed, with the reason; exit code 3."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "fault", "run_id": "fault-run", "lake_uri": str(tmp_path / "lake"),
        "workloads": [{"input_tokens": INPUT, "output_tokens": OUTPUT}],
        "sweep": {"batch_sizes": [1, 2, 3], "requests_per_point": 4, "warmup_requests": 1,
                  "max_consecutive_failures": 2, "scrape_interval_s": 0.2}}))
    (tmp_path / "tmp").mkdir()
    run = subprocess.Popen([sys.executable, "-m", "servesweep.cli", "run", str(spec), "--pipeline-root",
                            str(tmp_path / "kfp")], cwd=ROOT, env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        killed = _kill_server_after_first_point(tmp_path / "kfp", run, deadline=time.monotonic() + 900)
        output, _ = run.communicate(timeout=900)
    finally:
        if run.poll() is None:
            run.kill()
    assert killed, output
    assert run.returncode == PARTIAL, output
    assert "2 of 3 points failed: circuit breaker: 2 consecutive requests failed" in " ".join(output.split())

    lake = str(tmp_path / "lake")
    points = query(lake, "select point_id, status, failure_reason, num_requests from points "
                         "where source = 'measured' order by batch_size").to_pylist()
    assert points[0]["status"] == "ok" and points[0]["num_requests"] == 4
    for point in points[1:]:
        assert point["status"] == "failed" and point["failure_reason"].startswith("circuit breaker: "), point
    first = query(lake, f"select count(*) as n, bool_and(ok) as ok from requests where not warmup "
                        f"and point_id = '{points[0]['point_id']}'").to_pylist()
    assert first == [{"n": 4, "ok": True}]  # the completed requests are in the lake
    assert list((tmp_path / "tmp").glob("servesweep-servers-*")) == []
    assert "Starting vLLM server on" in (tmp_path / "kfp" / "fault-run-servers" / "server-cc.log").read_text()


def _kill_server_after_first_point(pipeline_root: Path, run: subprocess.Popen, deadline: float) -> bool:
    """SIGKILL the server's process group once the sweep step has saved its first point (it saves after each)."""
    while run.poll() is None and time.monotonic() < deadline:
        for path in pipeline_root.glob("servesweep-*/for-loop-*/sweep/raw/manifest.json"):
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError):  # being written
                continue
            if manifest["windows"]:
                os.killpg(manifest["endpoint"]["pid"], signal.SIGKILL)
                return True
        time.sleep(0.05)
    return False
