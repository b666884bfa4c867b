"""The lake schema: four Parquet tables, versioned, defined here and nowhere else.

Layout: ``{lake}/{table}/run_id={run_id}/part-*.parquet`` (hive partitioning by run id).

Metric definitions (all times measured on the client with a monotonic clock, reported in ms unless
the column says otherwise; a "token chunk" is an SSE event whose choice carries non-empty text):

- **TTFT** (time to first token): first token chunk arrival - request send.
- **E2E** (end-to-end latency): last token chunk arrival - request send.
- **TPOT** (time per output token, after the first): (E2E - TTFT) / (output_tokens - 1), per request;
  undefined (null) for one-token outputs. Same formula as vLLM's bench and MLPerf (AIPerf calls it ITL).
- **ITL** (inter-token latency): every gap between consecutive token chunks of a request, pooled
  over all requests of a point. With one token per chunk (vLLM streams that way) ITL percentiles
  describe decode-step jitter that TPOT's per-request mean hides.
- **Output tokens** come from the server's `usage.completion_tokens`; the client also counts token
  chunks (`output_chunks`) so a mismatch is visible. Input tokens: `usage.prompt_tokens`.
- **Throughput** of a point: tokens (or requests) finished / (last end - first send) of the point's
  measured requests; warm-up requests are excluded. Total = input + output tokens.
- **Schedule lag**: actual send - scheduled send. Open loop: the Poisson plan's time (a request
  that found every slot busy waited for one, and that wait counts). Closed loop: the time its slot
  became free (the end of the previous response on it; the point's start for the first), so the lag
  is the client's turnaround. `client_limited` flags a point where the client, not the server, set
  the pace: achieved rate < 95 % of the scheduled rate, or schedule lag p99 / client loop lag p99
  (how late a 10 ms timer fires in the load generator) / client read lag p99 over 5 ms.
- **Arrival times** (`client_timing` = kernel): on Linux over plain HTTP a chunk's arrival is the
  kernel's receive stamp of its bytes, not when the client's loop read them, so TTFT, TPOT and ITL
  carry no client-side delay. `client_read_lag_p99_ms` is that delay (kernel receive -> read): chunks
  left unread past the next one merge in the kernel and share its stamp, so timings stay exact while it
  is below the inter-token interval. `client_loop_lag_max_ms` is the loop's longest stall: one longer
  than the ITL (a synchronised burst of completions, the process descheduled) merges the arrivals of
  the streams it spans, which no p99 over a few hundred timer samples shows.
  `client_timing` = loop (TLS): arrivals are when the loop read them.
- Percentiles use linear interpolation between closest ranks (numpy's default), over successful
  requests only. `p99_few_requests` marks a point whose p99 rests on fewer than 100 requests: it is
  then an interpolation between the largest few values, not a tail estimate.
- **Excluded requests** (`warmup`, `cooldown` in requests; statistics use neither): warm-up requests
  sent one at a time before the point (`sweep.warmup_requests`), and requests sent during the point's
  first `sweep.warmup_s` seconds at its own load; in open loop also the cool-down tail, the arrivals of
  the point's last `sweep.cooldown_s` seconds (they keep the load on while the measured requests end).
- **Repeats** (`sweep.repeats`): the whole grid runs again, interleaved (grid, then grid again), and a
  point's row pools every repeat's measured requests (`requests.repeat` tells them apart).
- **Confidence intervals** (95 %, `*_ci_low*`, `*_ci_high*`): a percentile bootstrap, numpy only,
  seeded from the point id (deterministic), 1000 resamples. Latency percentiles: resample the repeats,
  then the requests of each drawn repeat, and take the percentile of the pool. Output throughput: each
  repeat's measured window is cut into 10 equal time bins (tokens per bin, by chunk arrival); resample
  the repeats, then the bins, and take tokens / time. `noisy`: with two or more repeats, the repeats'
  own intervals (output throughput, and p50 TTFT, TPOT and E2E) share no common value: the repeats
  disagree by more than each one's noise allows.
  ITL percentiles pool every request's gaps, and a request's gaps are not independent (they share its
  slot and batch), so their intervals resample whole requests (a cluster bootstrap: repeats, then
  requests with all their gaps); the pooled gaps are counted in log bins of 0.5 % relative half-width,
  so those bounds are within 0.5 % of the exact resamples' (tests/unit/metrics/test_itl_intervals.py).
- **Goodput** (`slo.request_*_ms`, per-request limits): a request meets the SLO when it succeeded and
  its TTFT, TPOT, largest inter-token gap and E2E are each within the limit set (any subset; unset: not
  checked). `goodput` = measured requests meeting it / the point's duration (req/s); `slo_attainment`
  = their fraction of the measured requests (failed ones count as misses).
- **Sampling** (`temperature`, `top_p`, `top_k`, `min_output_tokens`, `ignore_eos`, `stop`,
  `extra_request_fields`): what every request of the point asked the server for
  (servesweep.spec.WorkloadShape); null top_p / top_k: not sent, the server's default.
- **Runs** (the `runs` table): one row per run, the fingerprint of what it measured on — servesweep's
  version and commit, the spec's hash and JSON, the server's version (its API, else its package), on GKE
  the server's image, digest and node type, the GPUs (NVML: names, count, driver, CUDA), the load
  generator's CPU and Python. `notes` says why a field is null.
- **Configurations** (the analysis views, servesweep/sql/point_costs.sql): a configuration is what was
  measured, never when — model and dtype, quantization, server kind and version (from `runs`), accelerator,
  count and node machine type (where known), workload (name, source, api, input/output lengths), sampling,
  and load kind; not the run id, not the batch. `config_id` = 'cfg-' + 12 hex digits of its md5, so a
  sweep split over two runs, or resumed, is one series in every view and chart. When runs measured the
  same configuration at the same load (batch, rate, stage), the newest measurement is used (latest
  `started_at`; a resume's copy yields to the row it copied), never a pool: intervals and `noisy` come from
  repeats within one run. `measured_by_runs` lists every run that measured the slot, and `servesweep
  compare` shows what changed between them. (`config_hash` identifies a point, batch and load included:
  resume matches on it.)

Migration: readers accept every version; a column an older lake lacks reads as null (no rewrite; `migrate`
brings a table read from an older file to this version, one small function per version step), and a
lake without a `runs` table has no fingerprints. v6 (fleet scale): request latencies are float32 ms and the
gaps are stored packed (`itl_ms_packed`, read back as `itl_ms` by `servesweep query` and `read_table`);
points carry DDSketch bins per latency metric (`*_sketch`, relative accuracy 1 %: a pooled q-quantile is
within 1 % of the exact value at rank floor(q (n - 1))), merged by `servesweep pooled` across any set of
points. Older runs read as they are (sketches null: `servesweep pooled` sketches their requests on the fly);
`servesweep lake migrate` rewrites them as the current version, one commit per run (RUN_MIGRATIONS).
`servesweep lake compact` copies every run's small tables into one file each, one row group per run, safe
beside readers. The committed H100 and H200 lakes (v2-v4) stay readable:
tests/integration/results/test_gpu_results.py, tests/integration/results/test_h200_results.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servesweep.lake.sketch import RELATIVE_ACCURACY, SKETCH_TYPE, grouped

# Version history (readers accept every version; missing columns read as null):
#   1: first lake.
#   2: points gain gpu_utilization_mean, gpu_memory_used_max_gib, gpu_power_mean_w (NVML) and
#      scheduled_rate, client_loop_lag_p99_ms, client_limited, client_workers (load-generator health).
#   3: points gain client_timing (kernel receive stamps or loop reads), client_read_lag_p99_ms and
#      client_loop_lag_max_ms.
#   4: a `runs` table (the run's fingerprint); requests gain cooldown, repeat and slo_met; points gain the
#      sampling parameters, warm-up/cool-down settings and counts, repeats, 95 % intervals, noisy,
#      p99_few_requests, goodput and slo_attainment with the per-request limits applied. Older lakes read
#      with all of these null.
#   5: points gain api, workload_name and workload_source (where the requests came from: synthetic, a
#      dataset format, shared-prefix, conversation) and prefix_cache_queries, prefix_cache_hits,
#      prefix_cache_hit_rate (vLLM's counters); load shapes: stage, ramp_to_rate, trace, arrival,
#      burstiness; stop_reason (the early-stop constraint that ended the climb after the point); config_hash
#      (servesweep/identity.py) and reused_from_run (resume). Older lakes read with these null
#      (migrate_v4_to_v5).
#   6: fleet scale. requests: latencies as float32 ms (ttft_ms, e2e_ms, tpot_ms, schedule_lag_ms) and the gaps
#      stored packed (itl_ms_packed: one value per row, read back as itl_ms); points gain per-point DDSketch
#      bins (ttft_sketch, tpot_sketch, itl_sketch, e2e_sketch, sketch_relative_accuracy) for pooled
#      percentiles. Older lakes read as they are (sketches null); `servesweep lake migrate` rewrites their runs
#      as v6 (RUN_MIGRATIONS[6]), computing the sketches from their requests.
#   7: an `accuracy` table (per variant: perplexity and task scores with intervals, and the comparison with
#      the unquantized baseline); runs gain the quantize step's result; points gain 95 % intervals of the
#      ITL percentiles (itl_*_ci_*_ms, a cluster bootstrap over requests) and imported_from (rows imported
#      from vLLM's bench, guidellm or inference-perf; requests.sent_at_unix and requested_output_tokens may be
#      null in such rows); requests gain conversation and turn (multi-turn workloads). The columns listed in
#      V7_ADDED (per table) read as null in older rows (migrate_v6_to_v7).
SCHEMA_VERSION = 7
TABLES = ("requests", "points", "server_metrics", "runs", "accuracy")
PARTITION_COLUMN = "run_id"
STATS = ("p50", "p90", "p95", "p99", "mean")
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2e")
SKETCHED = {"ttft": "TTFT", "tpot": "TPOT", "itl": "inter-token gaps (pooled)", "e2e": "E2E latency"}
PACKED_GAPS = "itl_ms_packed"


def _f(name: str, kind: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"doc": doc})


_RUN_KEYS = [
    _f("run_id", pa.string(), "Run identifier; the partition key.", nullable=False),
    _f("schema_version", pa.int32(), "Lake schema version that wrote the row.", nullable=False),
]

REQUESTS = pa.schema(
    _RUN_KEYS
    + [
        _f("point_id", pa.string(), "Sweep point the request belongs to.", nullable=False),
        _f("deployment_id", pa.string(), "Server deployment that served it.", nullable=False),
        _f("request_index", pa.int32(), "Order of issue within the point and repeat: measured (and cool-down) "
           "requests from 0, warm-up requests negative, the earliest most negative.", nullable=False),
        _f("warmup", pa.bool_(), "Warm-up request, excluded from the point's statistics.", nullable=False),
        _f("cooldown", pa.bool_(), "Cool-down request (open loop: sent in the point's last sweep.cooldown_s "
           "seconds), excluded from the point's statistics."),
        _f("repeat", pa.int32(), "Which repeat of the point (0-based; sweep.repeats)."),
        _f("ok", pa.bool_(), "Request finished with the requested output and no error.", nullable=False),
        _f("error", pa.string(), "Error text when not ok."),
        _f("scheduled_at_s", pa.float64(), "Planned send time, seconds since the point started."),
        _f("sent_at_s", pa.float64(), "Send time, seconds since the point started.", nullable=False),
        _f("sent_at_unix", pa.float64(), "Send time, Unix epoch seconds (joins to server_metrics); null only in rows "
           "imported from a tool that kept a monotonic clock alone (vLLM's bench: points.imported_from)."),
        _f("ttft_ms", pa.float32(), "First token chunk arrival - send."),
        _f("e2e_ms", pa.float32(), "Last token chunk arrival - send."),
        _f("tpot_ms", pa.float32(), "(E2E - TTFT) / (output_tokens - 1)."),
        _f("itl_ms", pa.list_(pa.float32()), "Gaps between consecutive token chunks. Stored in itl_ms_packed from "
           "v6 on (this column: v5 and older files); readers (servesweep query, read_table) see itl_ms always."),
        _f("itl_ms_packed", pa.large_binary(), "The gaps packed, v6+: little-endian float32 ms, 4 bytes each (one "
           "Parquet value per request instead of one per gap); read as itl_ms."),
        _f("schedule_lag_ms", pa.float32(), "Actual - scheduled send."),
        _f("requested_input_tokens", pa.int32(), "Prompt length asked for.", nullable=False),
        _f("requested_output_tokens", pa.int32(), "max_tokens asked for; null only in imported rows whose file does "
           "not say (points.imported_from)."),
        _f("input_tokens", pa.int32(), "usage.prompt_tokens reported by the server."),
        _f("output_tokens", pa.int32(), "usage.completion_tokens reported by the server."),
        _f("output_chunks", pa.int32(), "Token chunks the client received."),
        _f("slo_met", pa.bool_(), "Succeeded within every per-request SLO limit (slo.request_*_ms); null when "
           "none is set."),
        _f("conversation", pa.int32(), "Which conversation of its point the request is a turn of (a "
           "conversation workload: synthetic, or a ShareGPT file's turns); null: a request of its own. v7+."),
        _f("turn", pa.int32(), "Its 0-based turn in that conversation: its prompt holds the earlier turns' "
           "messages and the server's own answers to them; null: not a conversation's. v7+."),
    ]
)


def _stat_fields(metric: str, doc: str) -> list[pa.Field]:
    return [_f(f"{metric}_{stat}_ms", pa.float64(), f"{doc} ({stat}).") for stat in STATS]


CI_METRICS = ("ttft", "tpot", "e2e")
CI_PERCENTILES = ("p50", "p90", "p95", "p99")


ITL_BIN_ACCURACY = 0.005  # relative half-width of the log bins the ITL bootstrap pools gaps in


def _ci_fields() -> list[pa.Field]:
    return [_f(f"{metric}_{stat}_ci_{end}_ms", pa.float64(), f"95 % interval of {metric}_{stat}_ms, {end} end "
               "(request bootstrap within repeats, and across them).")
            for metric in CI_METRICS for stat in CI_PERCENTILES for end in ("low", "high")]


def _itl_ci_fields() -> list[pa.Field]:
    return [_f(f"itl_{stat}_ci_{end}_ms", pa.float64(), f"95 % interval of itl_{stat}_ms, {end} end: a cluster "
               "bootstrap that resamples whole requests (each with all its gaps, as a request's gaps are not "
               "independent) within repeats, and the repeats; gaps pooled in log bins of "
               f"{ITL_BIN_ACCURACY:.1%} relative half-width, so the bounds are within that of exact.")
            for stat in CI_PERCENTILES for end in ("low", "high")]


POINTS = pa.schema(
    _RUN_KEYS
    + [
        _f("point_id", pa.string(), "Unique within the run.", nullable=False),
        _f("deployment_id", pa.string(), "Server deployment of the point.", nullable=False),
        _f("source", pa.string(), "'measured', or 'predicted' for planner rows.", nullable=False),
        _f("status", pa.string(), "'ok', 'partial' (some errors) or 'failed' (no successful request, or stopped "
           "early: failure_reason).", nullable=False),
        _f("failure_reason", pa.string(), "Why the point failed (server start, circuit breaker, all failed...)."),
        _f("config_hash", pa.string(), "sha256 of what the point measured, without the run id "
           "(servesweep/identity.py: model, quantization, server kind and version, accelerator, workload, "
           "sampling, load, request counts): equal hashes, comparable points; resume and merges match on it."),
        _f("imported_from", pa.string(), "The tool whose result file this row was imported from (vllm-bench, "
           "guidellm, inference-perf: `servesweep import`; runs.notes names the file and what was converted); null: "
           "measured by servesweep. Metrics the file lacks are null, never estimated."),
        _f("reused_from_run", pa.string(), "Resume: the run that measured this point (its rows copied here, not "
           "measured again); null: measured by this run."),
        _f("stop_reason", pa.string(), "The sweep stopped climbing after this point, and why (sweep.stop: throughput "
           "plateau, error rate, SLO broken, budget); null: it went on, or was the last level."),
        _f("run_name", pa.string(), "Spec name."),
        _f("started_at", pa.timestamp("us", tz="UTC"), "Point start."),
        _f("model_name", pa.string(), "Served model name."),
        _f("model_preset", pa.string(), "Architecture preset."),
        _f("model_parameters", pa.int64(), "Parameter count."),
        _f("model_dtype", pa.string(), "Weights dtype."),
        _f("quantization", pa.string(), "none, fp8, int8, awq, gptq."),
        _f("server_kind", pa.string(), "vllm, transformers..."),
        _f("server_max_num_seqs", pa.int32(), "Server's batch cap for this deployment."),
        _f("server_start_s", pa.float64(), "Cold start: launch to ready, seconds."),
        _f("accelerator", pa.string(), "cpu or a GKE accelerator type."),
        _f("accelerator_count", pa.int32(), "Accelerators per server."),
        _f("sweep_mode", pa.string(), "client_concurrency (one deploy) or server_max_seqs (redeploy)."),
        _f("load_kind", pa.string(), "closed (fixed concurrency) or open (arrivals on a schedule)."),
        _f("arrival", pa.string(), "Open loop: poisson or gamma arrivals (null: closed loop)."),
        _f("burstiness", pa.float64(), "Open loop: the gamma gaps' shape (1: Poisson; below 1 burstier)."),
        _f("stage", pa.int32(), "sweep.stages: which stage (0-based) the point is; null: not a staged load."),
        _f("ramp_to_rate", pa.float64(), "A ramping stage: the arrival rate at its end, req/s (request_rate: at its "
           "start)."),
        _f("trace", pa.bool_(), "The point replayed sweep.trace's arrivals (request_rate null; scheduled_rate "
           "is the trace's)."),
        _f("batch_size", pa.int32(), "The swept batch size: client concurrency or server cap.", nullable=False),
        _f("concurrency", pa.int32(), "Client concurrency limit."),
        _f("request_rate", pa.float64(), "Requested arrival rate, req/s (open loop)."),
        _f("input_tokens", pa.int32(), "Requested prompt length (a dataset workload: the longest prompt kept)."),
        _f("output_tokens", pa.int32(), "Requested output length (a dataset workload: the cap of its lengths)."),
        _f("api", pa.string(), "completions (/v1/completions) or chat (/v1/chat/completions)."),
        _f("workload_name", pa.string(), "The workload's name (workloads[].name); null: known by its lengths."),
        _f("workload_source", pa.string(), "Where the prompts came from: synthetic, or a dataset format (sharegpt, "
           "jsonl, hf); requests.requested_* hold each request's own lengths."),
        _f("num_requests", pa.int32(), "Measured requests (warm-up excluded)."),
        _f("num_errors", pa.int32(), "Measured requests that failed."),
        _f("duration_s", pa.float64(), "Last end - first send of measured requests."),
        _f("achieved_rate", pa.float64(), "Requests sent / send window, req/s."),
        _f("request_throughput", pa.float64(), "Successful requests / duration, req/s."),
        _f("input_token_throughput", pa.float64(), "Input tokens / duration, tok/s."),
        _f("output_token_throughput", pa.float64(), "Output tokens / duration, tok/s."),
        _f("total_token_throughput", pa.float64(), "(Input + output) tokens / duration, tok/s."),
    ]
    + _stat_fields("ttft", "Time to first token")
    + _stat_fields("tpot", "Time per output token after the first")
    + _stat_fields("itl", "Inter-token latency, pooled gaps")
    + _stat_fields("e2e", "End-to-end latency")
    + [
        _f("schedule_lag_p50_ms", pa.float64(), "Median send lag behind schedule."),
        _f("schedule_lag_p99_ms", pa.float64(), "p99 send lag behind schedule."),
        _f("scheduled_rate", pa.float64(), "Rate of the planned sends, req/s: what achieved_rate should be."),
        _f("client_loop_lag_p99_ms", pa.float64(), "p99 lateness of a 10 ms timer in the load generator's loop."),
        _f("client_loop_lag_max_ms", pa.float64(), "Longest stall of the load generator's loop (worst lateness of "
           "its 10 ms timer); longer than the ITL, it merged some streams' token arrivals."),
        _f("client_limited", pa.bool_(), "The load generator, not the server, limited the point: achieved < 95 % "
           "of scheduled rate, or schedule lag, client loop lag or client read lag p99 over 5 ms."),
        _f("client_workers", pa.int32(), "Load-generator processes."),
        _f("client_timing", pa.string(), "What timed token arrivals: kernel (receive stamps) or loop (reads)."),
        _f("client_read_lag_p99_ms", pa.float64(), "p99 wait of received bytes in the kernel before the load "
           "generator read them (kernel timing only); timings are exact while it is below the ITL."),
        _f("kv_cache_usage_max", pa.float64(), "Peak server KV-cache usage (0-1) during the point."),
        _f("running_requests_mean", pa.float64(), "Mean running requests on the server."),
        _f("running_requests_max", pa.float64(), "Peak running requests on the server."),
        _f("waiting_requests_max", pa.float64(), "Peak queued requests on the server."),
        _f("prefix_cache_queries", pa.float64(), "Prompt tokens the server looked up in its prefix cache during the "
           "point (increase of vllm:prefix_cache_queries_total over the point's scrapes)."),
        _f("prefix_cache_hits", pa.float64(), "Of those, tokens found in the cache (vllm:prefix_cache_hits_total)."),
        _f("prefix_cache_hit_rate", pa.float64(), "prefix_cache_hits / prefix_cache_queries: the share of prompt "
           "tokens the server did not have to compute; null without those counters (prefix caching off, another "
           "server, or fewer than two scrapes)."),
        _f("gpu_utilization_mean", pa.float64(), "Mean NVML GPU utilisation (%) over the point's samples."),
        _f("gpu_memory_used_max_gib", pa.float64(), "Peak GPU memory used (GiB) by any GPU during the point."),
        _f("gpu_power_mean_w", pa.float64(), "Mean GPU power draw (W) per GPU during the point."),
        _f("servesweep_version", pa.string(), "Tool version."),
        _f("temperature", pa.float64(), "Sampling temperature sent with every request (0: greedy)."),
        _f("top_p", pa.float64(), "Nucleus sampling top_p sent; null: not sent (the server's default)."),
        _f("top_k", pa.int32(), "top_k sent; null: not sent (the server's default)."),
        _f("min_output_tokens", pa.int32(), "min_tokens sent: the server may not end a response sooner."),
        _f("ignore_eos", pa.bool_(), "ignore_eos sent: end-of-sequence does not end a response."),
        _f("stop", pa.list_(pa.string()), "Stop strings sent (empty: none)."),
        _f("extra_request_fields", pa.string(), "Further request fields sent, as JSON (workload extra_body)."),
        _f("warmup_requests", pa.int32(), "Warm-up requests sent one at a time before the point (setting)."),
        _f("warmup_s", pa.float64(), "Seconds of the point's own load before measuring (setting)."),
        _f("cooldown_s", pa.float64(), "Open loop: seconds of arrivals after the measured ones (setting)."),
        _f("num_warmup", pa.int32(), "Warm-up requests sent, excluded from the statistics."),
        _f("num_cooldown", pa.int32(), "Cool-down requests sent, excluded from the statistics."),
        _f("repeats", pa.int32(), "Repeats pooled in this row (sweep.repeats; interleaved over the grid)."),
        _f("output_token_throughput_ci_low", pa.float64(), "95 % interval of output_token_throughput, low end "
           "(time-bin bootstrap within repeats, and across them), tok/s."),
        _f("output_token_throughput_ci_high", pa.float64(), "95 % interval of output_token_throughput, high "
           "end, tok/s."),
    ]
    + _ci_fields()
    + _itl_ci_fields()
    + [
        _f("noisy", pa.bool_(), "Repeats disagree more than their intervals allow (output throughput or p50 "
           "TTFT/TPOT/E2E); null with one repeat."),
        _f("p99_few_requests", pa.bool_(), "p99 rests on fewer than 100 successful requests."),
        _f("goodput", pa.float64(), "Measured requests meeting every per-request SLO / duration, req/s; null "
           "when no per-request SLO is set."),
        _f("slo_attainment", pa.float64(), "Fraction of the measured requests meeting every per-request SLO."),
        _f("slo_request_ttft_ms", pa.float64(), "Per-request TTFT limit goodput applied, ms."),
        _f("slo_request_tpot_ms", pa.float64(), "Per-request TPOT limit goodput applied, ms."),
        _f("slo_request_itl_ms", pa.float64(), "Per-request limit on the largest inter-token gap applied, ms."),
        _f("slo_request_e2e_ms", pa.float64(), "Per-request E2E limit goodput applied, ms."),
    ]
    + [_f(f"{metric}_sketch", SKETCH_TYPE, f"DDSketch of the point's {what} (ms, successful measured requests): "
          "bucket keys (sorted), their counts, and the count at zero; merge points by adding bins "
          "(servesweep.lake.sketch).") for metric, what in SKETCHED.items()]
    + [_f("sketch_relative_accuracy", pa.float64(), "Relative accuracy of the sketches: a sketch's (or a merge's) "
          "q-quantile is within this fraction of the exact value at rank floor(q (n - 1)).")]
)

SERVER_METRICS = pa.schema(
    _RUN_KEYS
    + [
        _f("deployment_id", pa.string(), "Server deployment scraped.", nullable=False),
        _f("point_id", pa.string(), "Point running when scraped (null between points)."),
        _f("scraped_at_unix", pa.float64(), "Scrape time, Unix epoch seconds.", nullable=False),
        _f("metric", pa.string(), "Sample name as exposed (e.g. vllm:num_requests_running).", nullable=False),
        _f("labels", pa.map_(pa.string(), pa.string()), "Sample labels."),
        _f("value", pa.float64(), "Sample value.", nullable=False),
    ]
)

RUNS = pa.schema(
    _RUN_KEYS
    + [
        _f("run_name", pa.string(), "Spec name."),
        _f("started_at", pa.timestamp("us", tz="UTC"), "First point's start."),
        _f("servesweep_version", pa.string(), "servesweep's version."),
        _f("git_commit", pa.string(), "Commit of the servesweep checkout that ran; null outside a git checkout."),
        _f("git_dirty", pa.bool_(), "That checkout had uncommitted changes to tracked files."),
        _f("spec_hash", pa.string(), "sha256 of spec_json: equal hashes, equal specs (an imported run: of "
           "the imported file).", nullable=False),
        _f("spec_json", pa.string(), "The spec as canonical JSON (sorted keys; run_id left out, server.env "
           "values withheld)."),
        _f("server_kind", pa.string(), "vllm, transformers..."),
        _f("server_version", pa.string(), "The server's version (vLLM: GET /version), else its package's."),
        _f("server_version_source", pa.string(), "Where server_version came from (a route or a package)."),
        _f("server_image", pa.string(), "GKE: the server container's image (pod spec); null locally."),
        _f("server_image_digest", pa.string(), "GKE: the digest of the image the node ran (pod status)."),
        _f("node_machine_type", pa.string(), "GKE: the server node's machine type (its instance-type label)."),
        _f("gpu_name", pa.string(), "GPU model(s) of the server: NVML locally, the node's accelerator label on "
           "GKE."),
        _f("gpu_count", pa.int32(), "GPUs of the server."),
        _f("gpu_driver_version", pa.string(), "NVIDIA driver version (NVML nvmlSystemGetDriverVersion)."),
        _f("cuda_driver_version", pa.string(), "CUDA version the driver supports (NVML "
           "nvmlSystemGetCudaDriverVersion)."),
        _f("host_cpu_model", pa.string(), "CPU model of the load generator's machine (locally the server's too)."),
        _f("host_cpu_count", pa.int32(), "Logical CPUs of that machine."),
        _f("python_version", pa.string(), "Python of the load generator."),
        _f("os_platform", pa.string(), "Operating system of the load generator's machine (platform.platform())."),
        _f("notes", pa.string(), "Why fields are null, '; '-separated."),
        _f("quantization", pa.string(), "The variant the run served: 'none' (the source dtype), a server method "
           "(fp8) or a checkpoint method (w8a8-fp8, w8a8-int8, w4a16)."),
        _f("quantize_how", pa.string(), "How the quantize step made it: as-is, server, pretrained, dummy-layout or "
           "llmcompressor."),
        _f("quantize_tool", pa.string(), "The tool that quantized the checkpoint (llmcompressor); null when none did."),
        _f("quantize_tool_version", pa.string(), "That tool's version."),
        _f("quantize_cache_key", pa.string(), "sha256 of (source digest, method, parameters, tool version): the "
           "artifact's cache key."),
        _f("quantize_cached", pa.bool_(), "The artifact came from the cache (quantize_seconds is then the first "
           "run's)."),
        _f("quantize_seconds", pa.float64(), "Wall time of the quantization itself, s."),
        _f("weight_bytes", pa.int64(), "Bytes of the served checkpoint's weight files (*.safetensors); 0 when the "
           "server draws the weights (dummy)."),
    ]
)

ACCURACY = pa.schema(
    _RUN_KEYS
    + [
        _f("deployment_id", pa.string(), "Server deployment whose endpoint was scored.", nullable=False),
        _f("model", pa.string(), "Served model name.", nullable=False),
        _f("quantization", pa.string(), "The variant scored (runs.quantization).", nullable=False),
        _f("task", pa.string(), "What was scored: a held-out text set (perplexity) or an lm-eval task name.",
           nullable=False),
        _f("metric", pa.string(), "perplexity (exp of the mean negative log-likelihood per token, from the "
           "server's prompt log-probabilities of each held-out line's answer tokens, given its problem: "
           "servesweep.heldout) or exact_match (share of problems whose greedy completion equals the answer).",
           nullable=False),
        _f("higher_is_better", pa.bool_(), "Direction of the metric: exact_match yes, perplexity no.",
           nullable=False),
        _f("value", pa.float64(), "The metric over the task's items.", nullable=False),
        _f("ci_low", pa.float64(), "95 % interval, low end: seeded bootstrap over texts (perplexity) or Wilson "
           "over problems (exact_match)."),
        _f("ci_high", pa.float64(), "95 % interval, high end."),
        _f("items", pa.int32(), "Texts or problems scored."),
        _f("tokens", pa.int64(), "Answer tokens scored (perplexity); null for exact_match."),
        _f("baseline_run_id", pa.string(), "The run of the same model's unquantized variant compared against; "
           "null for the baseline itself or when none was found."),
        _f("baseline_value", pa.float64(), "The baseline's value of the same task and metric."),
        _f("delta", pa.float64(), "value - baseline_value."),
        _f("delta_low", pa.float64(), "95 % interval of the delta, low end (the two runs as independent samples)."),
        _f("delta_high", pa.float64(), "95 % interval of the delta, high end."),
        _f("threshold", pa.float64(), "The largest loss the spec allows: exact_match in points of share (0.02 = "
           "2 points), perplexity as a relative increase (0.05 = 5 %)."),
        _f("passed", pa.bool_(), "The loss is within the threshold; null without a baseline."),
        _f("tool", pa.string(), "What scored it: servesweep (perplexity) or lm-eval."),
        _f("tool_version", pa.string(), "That tool's version."),
        _f("measured_at", pa.timestamp("us", tz="UTC"), "When scoring finished."),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"requests": REQUESTS, "points": POINTS, "server_metrics": SERVER_METRICS,
                                 "runs": RUNS, "accuracy": ACCURACY}


# --- migrations: each turns a table written by version N into version N + 1, self-contained ----------------

def migrate_v4_to_v5(table: str, data: pa.Table) -> pa.Table:
    """v4 -> v5: points gain api, workload_name, workload_source and the prefix-cache columns (null: unknown
    for rows written before)."""
    if table != "points":
        return data
    added = {"api": pa.string(), "workload_name": pa.string(), "workload_source": pa.string(),
             "prefix_cache_queries": pa.float64(), "prefix_cache_hits": pa.float64(),
             "prefix_cache_hit_rate": pa.float64(), "arrival": pa.string(), "burstiness": pa.float64(),
             "stage": pa.int32(), "ramp_to_rate": pa.float64(), "trace": pa.bool_(), "stop_reason": pa.string(),
             "config_hash": pa.string(), "reused_from_run": pa.string()}
    for name, kind in added.items():
        if name not in data.column_names:
            data = data.append_column(pa.field(name, kind), pa.nulls(len(data), kind))
    return data


def migrate_v5_to_v6(table: str, data: pa.Table) -> pa.Table:
    """v5 -> v6: points gain the sketch columns, null (RUN_MIGRATIONS[6] computes them from a run's requests;
    requests' float32 latencies and packed gaps are how v6 writes, and readers take either)."""
    if table != "points":
        return data
    for name in ("ttft_sketch", "tpot_sketch", "itl_sketch", "e2e_sketch", "sketch_relative_accuracy"):
        if name not in data.column_names:
            field = POINTS.field(name)
            data = data.append_column(field, pa.nulls(len(data), field.type))
    return data


# Columns v7 adds, per table (each also defined, with its doc, in the table's schema above).
V7_ADDED: dict[str, tuple[str, ...]] = {
    "points": tuple(f"itl_{stat}_ci_{end}_ms" for stat in CI_PERCENTILES for end in ("low", "high"))
    + ("imported_from",),
    "requests": ("conversation", "turn"),
    "runs": ("quantization", "quantize_how", "quantize_tool", "quantize_tool_version", "quantize_cache_key",
             "quantize_cached", "quantize_seconds", "weight_bytes"),
}


def migrate_v6_to_v7(table: str, data: pa.Table) -> pa.Table:
    """v6 -> v7: the columns of V7_ADDED, null (unknown for rows written before)."""
    for name in V7_ADDED.get(table, ()):
        if name not in data.column_names:
            field = SCHEMAS[table].field(name)
            data = data.append_column(field, pa.nulls(len(data), field.type))
    return data


# from version -> the function to the next
TABLE_MIGRATIONS = {4: migrate_v4_to_v5, 5: migrate_v5_to_v6, 6: migrate_v6_to_v7}


def migrate(table: str, data: pa.Table, from_version: int) -> pa.Table:
    """`data` of `table` as written by `from_version`, brought to SCHEMA_VERSION step by step (versions before
    4 need none: readers take a missing column as null)."""
    for version in range(from_version, SCHEMA_VERSION):
        if version in TABLE_MIGRATIONS:
            data = TABLE_MIGRATIONS[version](table, data)
    return data


def describe(table: str) -> list[tuple[str, str, str]]:
    """(column, type, definition) for every column of a table: the data dictionary."""
    return [(f.name, str(f.type), (f.metadata or {}).get(b"doc", b"").decode()) for f in SCHEMAS[table]]


# --- the packed gaps (requests.itl_ms_packed) ---------------------------------------------------------------

def pack_gaps(lists: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """list<float32> gaps -> one little-endian float32 blob per request (null stays null)."""
    if isinstance(lists, pa.ChunkedArray):
        return pa.chunked_array([pack_gaps(chunk) for chunk in lists.chunks], pa.large_binary())
    lists = lists.cast(pa.list_(pa.float32()))
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lists) + 1, np.int64)
    np.cumsum(lengths * 4, out=offsets[1:])
    values = pc.fill_null(pc.list_flatten(lists), float("nan")).to_numpy(zero_copy_only=False)
    data = pa.py_buffer(np.ascontiguousarray(values, dtype="<f4"))
    packed = pa.Array.from_buffers(pa.large_binary(), len(lists), [None, pa.py_buffer(offsets), data])
    return pc.if_else(lists.is_null(), pa.scalar(None, pa.large_binary()), packed) if lists.null_count else packed


def unpack_gaps(blobs: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The inverse of pack_gaps, without copying the values."""
    if isinstance(blobs, pa.ChunkedArray):
        return pa.chunked_array([unpack_gaps(chunk) for chunk in blobs.chunks], pa.list_(pa.float32()))
    blobs = blobs.cast(pa.large_binary())
    buffers = blobs.buffers()
    offsets = np.frombuffer(buffers[1], np.int64)[blobs.offset: blobs.offset + len(blobs) + 1] if len(blobs) else \
        np.zeros(1, np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    values = (np.frombuffer(buffers[2], "<f4", count=(end - start) // 4, offset=start) if end > start
              else np.zeros(0, np.float32))
    return pa.ListArray.from_arrays(pa.array((offsets - start) // 4, pa.int32()), pa.array(values, pa.float32()),
                                    mask=blobs.is_null() if blobs.null_count else None)


def with_gaps(table: pa.Table) -> pa.Table:
    """A requests table read from the lake with every row's gaps in itl_ms (packed ones unpacked)."""
    if PACKED_GAPS not in table.column_names:
        return table
    packed = table[PACKED_GAPS]
    if packed.null_count == len(packed):
        return table
    gaps = unpack_gaps(packed)
    if "itl_ms" in table.column_names and table["itl_ms"].null_count < len(table):
        gaps = pc.if_else(table["itl_ms"].is_valid(), table["itl_ms"], gaps)
    table = table.set_column(table.column_names.index("itl_ms"), REQUESTS.field("itl_ms"), gaps)
    return table.set_column(table.column_names.index(PACKED_GAPS), REQUESTS.field(PACKED_GAPS),
                            pa.nulls(len(table), pa.large_binary()))


# --- migrations ---------------------------------------------------------------------------------------------
# RUN_MIGRATIONS[v] turns one run's tables (name -> table, read with the current schemas, so columns it lacks are
# null) from version v - 1 into version v. `servesweep lake migrate` applies those above a run's version, in
# order, and commits the result as the run's new generation. Each one is self-contained.

def _measured_ok(requests: pa.Table) -> pa.Array:
    cooldown = pc.fill_null(requests["cooldown"], False)
    return pc.and_(pc.and_(requests["ok"], pc.invert(requests["warmup"])), pc.invert(cooldown))


def _migrate_v6(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """v6: per-point sketches computed from the run's successful measured requests (numerics cast by the reader)."""
    points, requests = tables["points"], tables["requests"]
    requests = requests.filter(_measured_ok(requests))
    ids = points["point_id"].to_pylist()
    index = {point: i for i, point in enumerate(ids)}
    groups = np.array([index.get(p, -1) for p in requests["point_id"].to_pylist()], np.int64)
    known = groups >= 0
    columns: dict[str, list[Any]] = {}
    for metric in ("ttft", "tpot", "e2e"):
        values = requests[f"{metric}_ms"].to_numpy(zero_copy_only=False).astype(np.float64)
        columns[metric] = grouped(groups[known], values[known], len(ids))
    gaps = with_gaps(requests)["itl_ms"]
    lengths = pc.fill_null(pc.list_value_length(gaps), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(gaps).to_numpy(zero_copy_only=False).astype(np.float64)
    gap_groups = np.repeat(groups, lengths)
    columns["itl"] = grouped(gap_groups[gap_groups >= 0], flat[gap_groups >= 0], len(ids))
    measured = pc.equal(points["source"], "measured").to_pylist()
    for metric, sketches in columns.items():
        kept = [s if m else None for s, m in zip(sketches, measured, strict=True)]
        points = points.set_column(points.column_names.index(f"{metric}_sketch"), POINTS.field(f"{metric}_sketch"),
                                   pa.array(kept, SKETCH_TYPE))
    accuracy = pa.array([RELATIVE_ACCURACY if m else None for m in measured], pa.float64())
    points = points.set_column(points.column_names.index("sketch_relative_accuracy"),
                               POINTS.field("sketch_relative_accuracy"), accuracy)
    return {**tables, "points": points}


RUN_MIGRATIONS: dict[int, Callable[[dict[str, pa.Table]], dict[str, pa.Table]]] = {6: _migrate_v6}
