"""Run servesweep's load generator once (closed loop) and dump its records for run_bench.py.

The records are written columnar (.npz): request ids, send times and token-chunk arrival times as
absolute perf_counter seconds (CLOCK_MONOTONIC), the zero server's time line.
"""

from __future__ import annotations

import argparse

import numpy as np

from servesweep.loadgen.datagen import PromptFactory
from servesweep.loadgen.runner import LoadPlan, run_load


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", default="zero")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    prompts = PromptFactory(args.tokenizer)
    plan = LoadPlan(base_url=args.base_url, model=args.model, input_tokens=args.input_tokens,
                    output_tokens=args.output_tokens, concurrency=args.concurrency, num_requests=args.requests,
                    workers=args.workers, timeout_s=120)
    result = run_load(plan, prompts.make)
    records = result.records
    counts = np.array([len(r.token_times) for r in records], dtype=np.int64)
    times = [np.asarray(r.token_times, dtype=np.float64) + result.origin_perf for r in records]
    np.savez(
        args.out, request_id=np.array([r.request_id for r in records], dtype=str),
        sent_at=np.array([r.sent_at for r in records]) + result.origin_perf,
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        token_times=np.concatenate(times) if times else np.zeros(0),
        output_tokens=np.array([r.output_tokens or 0 for r in records], dtype=np.int64),
        ok=np.array([r.ok for r in records], dtype=bool),
        loop_lag_p99_ms=np.float64(result.loop_lag_p99_ms or 0.0),
        loop_lag_max_ms=np.float64(np.nan if result.loop_lag_max_ms is None else result.loop_lag_max_ms),
        read_lag_p99_ms=np.float64(np.nan if result.read_lag_p99_ms is None else result.read_lag_p99_ms),
        timing=np.array(result.timing),
    )


if __name__ == "__main__":
    main()
