"""Metric math against hand-computed values."""

import math

import pytest

from servesweep.metrics.prometheus import parse_samples
from servesweep.metrics.summary import request_latencies, stats, summarise_requests, summarise_server
from tests.support.paths import REPO


def test_request_latencies_by_hand():
    # sent at 1.000 s; tokens at 1.100, 1.150, 1.250, 1.300 s; 4 output tokens.
    result = request_latencies(1.0, [1.1, 1.15, 1.25, 1.3], 4)
    assert result["ttft_ms"] == pytest.approx(100.0)
    assert result["e2e_ms"] == pytest.approx(300.0)
    assert result["tpot_ms"] == pytest.approx((300.0 - 100.0) / 3)  # 66.67 ms
    assert result["itl_ms"] == pytest.approx([50.0, 100.0, 50.0])


def test_tpot_uses_server_token_count_when_chunks_coalesce():
    # 5 tokens arrived in 3 chunks: TPOT divides by tokens - 1 = 4, ITL has 2 gaps.
    result = request_latencies(0.0, [0.2, 0.4, 0.6], 5)
    assert result["tpot_ms"] == pytest.approx(400.0 / 4)
    assert len(result["itl_ms"]) == 2


def test_single_token_and_empty_requests():
    assert request_latencies(0.0, [0.05], 1)["tpot_ms"] is None
    assert request_latencies(0.0, [], None) == {"ttft_ms": None, "e2e_ms": None, "tpot_ms": None, "itl_ms": []}


def test_stats_by_hand():
    # values 10, 20, 30, 40: p50 = 25 (midpoint), p90 = 30 + 0.7*10 = 37, p99 = 30 + 0.97*10 = 39.7, mean = 25.
    result = stats([10, 20, None, 30, 40], "ttft")
    assert result == pytest.approx({"ttft_p50_ms": 25.0, "ttft_p90_ms": 37.0, "ttft_p95_ms": 38.5,
                                    "ttft_p99_ms": 39.7, "ttft_mean_ms": 25.0})
    assert stats([], "x") == {f"x_{s}_ms": None for s in ("p50", "p90", "p95", "p99", "mean")}


def _row(sent, ttft, e2e, tpot, itl, ok=True, warmup=False, inp=10, out=4, lag=None, error=None):
    return {"sent_at_s": sent, "ttft_ms": ttft, "e2e_ms": e2e, "tpot_ms": tpot, "itl_ms": itl, "ok": ok,
            "warmup": warmup, "input_tokens": inp, "output_tokens": out, "schedule_lag_ms": lag, "error": error}


def test_point_summary_by_hand():
    rows = [
        _row(-5.0, 1, 2, 1, [1.0], warmup=True),  # excluded
        _row(0.0, 100, 400, 100, [100.0, 100.0, 100.0], lag=1.0),  # ends at 0.4 s
        _row(0.5, 200, 500, 100, [50.0, 150.0, 100.0], lag=3.0),  # ends at 1.0 s
        _row(0.6, None, None, None, [], ok=False, inp=None, out=None, error="HTTP 500"),
    ]
    summary = summarise_requests(rows)
    assert summary["num_requests"] == 3 and summary["num_errors"] == 1 and summary["status"] == "partial"
    # window: first ok send 0.0 s -> last ok end 1.0 s
    assert summary["duration_s"] == pytest.approx(1.0)
    assert summary["request_throughput"] == pytest.approx(2.0)
    assert summary["input_token_throughput"] == pytest.approx(20.0)
    assert summary["output_token_throughput"] == pytest.approx(8.0)
    assert summary["total_token_throughput"] == pytest.approx(28.0)
    assert summary["ttft_mean_ms"] == pytest.approx(150.0) and summary["ttft_p50_ms"] == pytest.approx(150.0)
    assert summary["e2e_p99_ms"] == pytest.approx(400 + 0.99 * 100)
    # ITL pooled over both ok requests: 50,100,100,100,100,150 -> median 100
    assert summary["itl_p50_ms"] == pytest.approx(100.0) and summary["itl_mean_ms"] == pytest.approx(100.0)
    # 3 measured sends over 0.6 s -> 2 gaps / 0.6 s
    assert summary["achieved_rate"] == pytest.approx(2 / 0.6)
    assert summary["schedule_lag_p50_ms"] == pytest.approx(2.0)


def test_point_with_no_success_is_failed():
    summary = summarise_requests([_row(0.0, None, None, None, [], ok=False, error="boom")])
    assert summary["status"] == "failed" and summary["num_errors"] == 1 and summary["ttft_p50_ms"] is None


def test_server_summary():
    samples = [
        {"metric": "vllm:kv_cache_usage_perc", "value": 0.1},
        {"metric": "vllm:kv_cache_usage_perc", "value": 0.3},
        {"metric": "vllm:num_requests_running", "value": 2.0},
        {"metric": "vllm:num_requests_running", "value": 4.0},
        {"metric": "vllm:num_requests_waiting", "value": 1.0},
    ]
    samples += [
        {"metric": "gpu:utilization_percent", "value": 50.0},
        {"metric": "gpu:utilization_percent", "value": 100.0},
        {"metric": "gpu:memory_used_bytes", "value": 2 * 1024**3},
        {"metric": "gpu:memory_used_bytes", "value": 3 * 1024**3},
        {"metric": "gpu:power_watts", "value": 300.0},
    ]
    assert summarise_server(samples) == {"kv_cache_usage_max": 0.3, "running_requests_mean": 3.0,
                                         "running_requests_max": 4.0, "waiting_requests_max": 1.0,
                                         "gpu_utilization_mean": 75.0, "gpu_memory_used_max_gib": 3.0,
                                         "gpu_power_mean_w": 300.0, "prefix_cache_queries": None,
                                         "prefix_cache_hits": None, "prefix_cache_hit_rate": None}
    assert summarise_server([])["kv_cache_usage_max"] is None


def test_prefix_cache_hit_rate_is_the_counters_increase_over_the_point():
    def sample(metric: str, engine: str, value: float) -> dict:
        return {"metric": f"vllm:prefix_cache_{metric}_total", "labels": {"engine": engine}, "value": value}

    samples = [sample("queries", "0", 100), sample("hits", "0", 10), sample("queries", "1", 50),
               sample("hits", "1", 0), sample("queries", "0", 300), sample("hits", "0", 110),
               sample("queries", "1", 150), sample("hits", "1", 50)]
    summary = summarise_server(samples)
    assert (summary["prefix_cache_queries"], summary["prefix_cache_hits"]) == (300.0, 150.0)
    assert summary["prefix_cache_hit_rate"] == 0.5
    assert summarise_server(samples[:2])["prefix_cache_hit_rate"] is None  # one scrape: no increase


EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 1234.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e+09
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 5.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 7.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 7.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.9
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 10.0
"""


def test_prometheus_parsing_keeps_server_samples_without_buckets():
    samples = {(name, labels.get("engine")): value for name, labels, value in parse_samples(EXPOSITION)}
    assert samples == {
        ("vllm:num_requests_running", "0"): 3.0,
        ("vllm:generation_tokens_total", "0"): 1234.0,
        ("vllm:time_to_first_token_seconds_count", "0"): 7.0,
        ("vllm:time_to_first_token_seconds_sum", "0"): 0.9,
    }
    assert all(not math.isnan(v) for v in samples.values())


METRICS_TEXT = b"""# HELP vllm:num_requests_running Running requests.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
"""


@pytest.fixture
def metrics_url():
    """A real HTTP server answering /metrics with Prometheus text."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(METRICS_TEXT)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    thread.join()


def test_a_point_shorter_than_the_scrape_interval_still_has_its_own_samples(metrics_url):
    from servesweep.metrics.prometheus import MetricsSampler

    with MetricsSampler(metrics_url, "cc", interval_s=60.0) as sampler:  # the thread scrapes once, at the start
        for point_id in ("short-1", "short-2"):
            sampler.begin(point_id)
            sampler.end()
    tagged = [row["point_id"] for row in sampler.rows]
    # Its start and its end state (the thread's own first scrape may land inside a point too).
    assert tagged.count("short-1") >= 2 and tagged.count("short-2") >= 2 and len(tagged) == 5
    assert set(tagged) <= {None, "short-1", "short-2"} and sampler.errors == 0
    row = next(r for r in sampler.rows if r["point_id"] == "short-1")
    assert row["metric"] == "vllm:num_requests_running" and row["value"] == 3.0 and row["deployment_id"] == "cc"
    assert row["labels"] == {"model_name": "m"} and not sampler._thread.is_alive()


def test_the_filtered_parse_equals_the_full_parse_of_a_real_vllm_page():
    """parse_samples drops lines before parsing (buckets, other families): the same samples, less work."""

    from prometheus_client.parser import text_string_to_metric_families

    text = (REPO / "benchmarks" / "sampler" / "vllm_metrics.txt").read_text()
    full = [(s.name, dict(s.labels), float(s.value)) for family in text_string_to_metric_families(text)
            if family.name.startswith("vllm:") for s in family.samples
            if not s.name.endswith(("_created", "_bucket"))]
    assert len(full) > 20 and parse_samples(text) == full


def test_the_sampler_process_scrapes_in_a_child_and_returns_rows_at_each_end(metrics_url):
    import os

    from servesweep.metrics.remote import SamplerConfig, SamplerProcess

    configs = [SamplerConfig("prometheus", "cc", 60.0, url=metrics_url), SamplerConfig("gpu", "cc", 60.0)]
    with SamplerProcess(configs) as sampler:
        child = sampler._process.pid
        sampler.begin("p1")
        before = list(sampler.rows)  # nothing crosses the pipe while a point runs
        assert sampler.rows == before
        sampler.end()
        after_first = list(sampler.rows)
        sampler.begin("p2")
        sampler.end()
    assert child != os.getpid() and not sampler._process.is_alive()
    tagged = [row["point_id"] for row in after_first]
    assert tagged.count("p1") == 2 and set(tagged) <= {None, "p1"}  # begin and end sample, and the first scrape
    assert [row["point_id"] for row in sampler.rows].count("p2") == 2
    assert {row["metric"] for row in sampler.rows} == {"vllm:num_requests_running"}
    if sampler.unavailable:  # no NVML on this machine: said so, and the Prometheus sampler still ran
        assert sampler.unavailable[0].startswith("gpu sampler for cc: ")
