"""vLLM's own `vllm bench serve --save-result --save-detailed` against the real vLLM CPU server, imported: the
lake's rows are the file's numbers, and the imported run is reported beside nothing else (run it under
`flock /tmp/servesweep-vllm.lock`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from servesweep.importers import import_file
from servesweep.lake import store
from tests.fixtures.importers.make_vllm_bench import BENCH_SERVE

PROMPTS, CONCURRENCY = 12, 3


@pytest.fixture(scope="module")
def bench_result(vllm_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm-bench")
    env = {**os.environ, "OPENAI_API_KEY": "integration-key-7c1d"}  # the fixture server's --api-key
    subprocess.run([sys.executable, "-c", BENCH_SERVE, "--backend", "openai", "--base-url", vllm_server.base_url,
                    "--endpoint", "/v1/completions", "--model", vllm_server.served_name,
                    "--tokenizer", vllm_server.tokenizer_dir, "--dataset-name", "random", "--random-input-len", "24",
                    "--random-output-len", "12", "--random-range-ratio", "0", "--ignore-eos",
                    "--max-concurrency", str(CONCURRENCY), "--num-prompts", str(PROMPTS),
                    "--percentile-metrics", "ttft,tpot,itl,e2el", "--save-result", "--save-detailed",
                    "--result-dir", str(out), "--result-filename", "result.json"], check=True, env=env, timeout=600)
    return out / "result.json"


def test_real_vllm_bench_result_imports_with_its_numbers(bench_result, tmp_path):
    data = json.loads(bench_result.read_text())
    lake = str(tmp_path / "lake")
    result = import_file("vllm-bench", bench_result, lake)
    [point] = store.read_table(lake, "points", [result.run_id]).to_pylist()
    requests = store.read_table(lake, "requests", [result.run_id]).to_pylist()
    assert (point["batch_size"], point["num_requests"], point["imported_from"]) == (CONCURRENCY, PROMPTS,
                                                                                   "vllm-bench")
    assert point["ttft_p99_ms"] == pytest.approx(data["p99_ttft_ms"])
    assert point["tpot_mean_ms"] == pytest.approx(data["mean_tpot_ms"])
    assert point["itl_p99_ms"] == pytest.approx(data["p99_itl_ms"])
    assert point["e2e_p50_ms"] == pytest.approx(data["median_e2el_ms"])
    # p90 was not asked for (--metric-percentiles defaults to 99): computed from the per-request lists.
    assert "p90_ttft_ms" not in data
    assert point["ttft_p90_ms"] == pytest.approx(np.percentile([1000 * t for t in data["ttfts"]], 90), rel=1e-6)
    assert len(requests) == PROMPTS and all(r["ok"] for r in requests)
    assert sorted(r["output_tokens"] for r in requests) == sorted(data["output_lens"])
    assert np.mean([r["tpot_ms"] for r in requests]) == pytest.approx(data["mean_tpot_ms"], rel=1e-5)  # float32
