"""The load generator against the zero-work test server (fast: no vLLM), and schedule-lag reporting."""

import asyncio
import gc
import time

import numpy as np
import pytest

from benchmarks.loadgen.zero_server import ServerConfig, start_subprocess
from components.sweep import request_rows
from servesweep.loadgen.engine import LagMonitor
from servesweep.loadgen.runner import LoadPlan, LoadResult, run_load, split_jobs
from servesweep.metrics.summary import client_limited, summarise_requests
from servesweep.sweep_plan import SweepPoint
from tests.support.zero_server import running_zero_server

TTFT_MS, ITL_MS, TOKENS = 5.0, 2.0, 8


@pytest.fixture(scope="module")
def zero_server(tmp_path_factory):
    with running_zero_server(tmp_path_factory, TTFT_MS, ITL_MS) as server:
        yield server


def _prompt(tokens: int) -> str:
    return " ".join(["ba"] * (tokens - 1))


def _plan(server, **overrides) -> LoadPlan:
    fields = dict(base_url=server.base_url, model="zero", input_tokens=4, output_tokens=TOKENS,
                  concurrency=4, num_requests=12)
    return LoadPlan(**{**fields, **overrides})


def _point(load_kind: str) -> SweepPoint:
    return SweepPoint(point_id=f"p-{load_kind}", deployment_id="d", sweep_mode="client_concurrency", batch_size=4,
                      concurrency=4, input_tokens=4, output_tokens=TOKENS)


def test_closed_loop_streams_every_token_and_reports_slot_lag(zero_server):
    result = run_load(_plan(zero_server, warmup_requests=1), _prompt)
    measured = [r for r in result.records if not r.warmup]
    assert len(measured) == 12 and all(r.ok for r in result.records)
    assert [r.index for r in measured] == list(range(12))
    assert all(len(r.token_times) == TOKENS and r.output_tokens == TOKENS for r in measured)
    # Each slot's first request is scheduled at the start, the next ones when the slot freed up.
    assert all(r.scheduled_at is not None and 0 <= r.sent_at - r.scheduled_at < 0.05 for r in measured)
    ttft = [(r.token_times[0] - r.sent_at) * 1000 for r in measured]
    assert min(ttft) >= TTFT_MS - 1.0  # libuv timers are ms-granular: at most ~1 ms early rounding
    rows = request_rows("run", _point("closed"), result.records, result.started_unix)
    summary = summarise_requests(rows)
    assert summary["schedule_lag_p99_ms"] is not None and summary["schedule_lag_p99_ms"] >= 0
    assert result.loop_lag_p99_ms is not None and result.loop_lag_max_ms >= result.loop_lag_p99_ms
    assert client_limited(summary, open_loop=False, loop_lag_p99_ms=result.loop_lag_p99_ms) is (
        summary["schedule_lag_p99_ms"] > 5 or result.loop_lag_p99_ms > 5)


def test_token_arrivals_are_the_kernel_s_and_match_the_server_s_sends(tmp_path):
    """Ground truth: every chunk's client arrival against the zero server's own send time (one clock)."""
    server = start_subprocess(ServerConfig(ttft_ms=TTFT_MS, itl_ms=ITL_MS), tmp_path / "server.npz")
    try:
        result = run_load(_plan(server, concurrency=8, num_requests=24), _prompt)
    finally:
        log = server.stop()
    assert result.timing == "kernel" and result.read_lag_p99_ms is not None and result.read_lag_p99_ms >= 0
    assert gc.isenabled() and gc.get_freeze_count() == 0  # the collector's pause ended with the point
    rows = log.index()
    way_out, way_in = [], []
    for record in result.records:
        sends = log.sends(rows[record.request_id]) / 1e9
        arrivals = np.asarray(record.token_times) + result.origin_perf
        assert len(sends) == len(arrivals) == TOKENS
        way_out.extend(arrivals - sends)
        # The request's way in, against the server's kernel stamp of its arrival.
        way_in.append(log.received_ns[rows[record.request_id]] / 1e9 - (record.sent_at + result.origin_perf))
    # Loopback takes microseconds whatever the client loop was doing; the bounds are loose where a busy
    # 2-core machine may deschedule the server between its send stamp and the send itself.
    out, into = np.array(way_out), np.array(way_in)
    assert (out > -1e-4).all() and np.median(out) < 0.001 and out.max() < 0.05, out
    assert (into >= 0).all() and np.median(into) < 0.002 and into.max() < 0.05, into


def test_open_loop_lag_against_the_poisson_plan(zero_server):
    result = run_load(_plan(zero_server, concurrency=None, rate=200.0, num_requests=20), _prompt)
    assert all(r.ok for r in result.records)
    lags = np.array([r.sent_at - r.scheduled_at for r in result.records])
    assert (lags > -0.002).all()  # never (meaningfully) early; ms timer rounding at most
    summary = summarise_requests(request_rows("run", _point("open"), result.records, result.started_unix))
    assert summary["scheduled_rate"] == pytest.approx(19 / (result.records[-1].scheduled_at
                                                           - result.records[0].scheduled_at))


def test_two_worker_processes_share_one_point(zero_server):
    result = run_load(_plan(zero_server, workers=2, num_requests=16, warmup_requests=1), _prompt)
    assert result.workers == 2
    measured = [r for r in result.records if not r.warmup]
    assert sorted(r.index for r in measured) == list(range(16)) and all(r.ok for r in result.records)
    assert len({r.request_id for r in measured}) == 16
    # One clock for all workers: every send lies inside the parent's run.
    assert all(0 <= r.sent_at < 30 and r.token_times[-1] > r.sent_at for r in measured)


def test_split_jobs_divides_concurrency_and_arrivals():
    plan = LoadPlan(base_url="http://127.0.0.1:1", model="m", input_tokens=2, output_tokens=2, concurrency=5,
                    num_requests=10, workers=2)
    jobs = split_jobs(plan, [f"p{i}" for i in range(10)])
    assert [j.concurrency for j in jobs] == [3, 2] and sum(len(j.prompts) for j in jobs) == 10
    open_plan = plan.model_copy(update={"rate": 10.0, "concurrency": None})
    jobs = split_jobs(open_plan, [f"p{i}" for i in range(10)])
    assert sorted(i for j in jobs for i in j.indices) == list(range(10))
    assert all(j.schedule == sorted(j.schedule) for j in jobs)


def test_errors_are_recorded_not_raised(zero_server):
    # The server honours max_tokens; asking for 8 but finding another count is an error, as is a dead port.
    result = run_load(LoadPlan(base_url="http://127.0.0.1:9", model="m", input_tokens=2, output_tokens=2,
                               concurrency=1, num_requests=2, timeout_s=5), _prompt)
    assert all(not r.ok and r.error for r in result.records)


def test_client_limited_by_hand():
    behind = {"achieved_rate": 90.0, "scheduled_rate": 100.0, "schedule_lag_p99_ms": 1.0}
    assert client_limited(behind, open_loop=True, loop_lag_p99_ms=1.0)
    assert not client_limited(behind, open_loop=False, loop_lag_p99_ms=1.0)  # closed loop: no planned rate
    on_time = {"achieved_rate": 99.0, "scheduled_rate": 100.0, "schedule_lag_p99_ms": 1.0}
    assert not client_limited(on_time, open_loop=True, loop_lag_p99_ms=1.0)
    assert client_limited(on_time, open_loop=True, loop_lag_p99_ms=12.0)
    assert client_limited({**on_time, "schedule_lag_p99_ms": 8.0}, open_loop=True, loop_lag_p99_ms=None)
    assert client_limited(on_time, open_loop=True, loop_lag_p99_ms=1.0, read_lag_p99_ms=6.0)
    assert not client_limited(on_time, open_loop=True, loop_lag_p99_ms=1.0, read_lag_p99_ms=0.2)


def test_one_stall_shows_in_the_loop_lag_max_not_its_p99():
    """A single long stall among many quiet timer samples: the max sees it, a p99 cannot."""
    async def run() -> list[float]:
        monitor = LagMonitor()
        monitor.start()
        await asyncio.sleep(0.3)
        time.sleep(0.08)  # the loop is blocked once for 80 ms (a round of completions, a descheduled process)
        await asyncio.sleep(2.5)  # enough samples that a p99 is not the top one's
        monitor.stop()
        return [lag * 1000.0 for lag in monitor.lags]

    lags = asyncio.run(run())
    result = LoadResult(records=[], started_unix=0.0, loop_lags_ms=lags)
    assert len(lags) > 200, len(lags)
    # The probe due next may have been up to one 10 ms period away when the block began: 70..80 ms late.
    assert result.loop_lag_max_ms >= 65.0, sorted(lags)[-5:]
    assert float(np.percentile(lags, 99)) < 40.0, sorted(lags)[-5:]  # the third-highest of ~280 samples
    assert LoadResult(records=[], started_unix=0.0).loop_lag_max_ms is None


def test_a_starved_client_is_still_flagged(zero_server, monkeypatch):
    """The flag is not simply gone with the sampler: a loop that loses 20 ms of every 70 (what a CPU hog
    beside the client takes) is still flagged client-limited."""
    start = LagMonitor.start

    def start_beside_a_hog(self: LagMonitor) -> None:
        start(self)
        loop = asyncio.get_running_loop()

        def hog() -> None:
            time.sleep(0.02)
            loop.call_later(0.05, hog)

        loop.call_later(0.05, hog)

    monkeypatch.setattr(LagMonitor, "start", start_beside_a_hog)
    result = run_load(_plan(zero_server, num_requests=200), _prompt)
    summary = summarise_requests(request_rows("run", _point("closed"), result.records, result.started_unix))
    assert summary["num_errors"] == 0 and result.loop_lag_p99_ms > 5.0
    assert client_limited(summary, open_loop=False, loop_lag_p99_ms=result.loop_lag_p99_ms,
                          read_lag_p99_ms=result.read_lag_p99_ms)
