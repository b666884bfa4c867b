"""Chat completions and prompt files against the real vLLM server (benchmarked as an external endpoint)."""

from __future__ import annotations

import json

import pytest

from servesweep.lake.query import query
from servesweep.loadgen.datagen import PromptFactory
from servesweep.spec import parse_spec
from tests.integration.conftest import run_steps

pytestmark = pytest.mark.server


def _spec(vllm_server, tmp_path, workloads, **sweep) -> dict:
    return {"run_id": "it", "lake_uri": str(tmp_path / "lake"), "server": vllm_server.external(),
            "workloads": workloads, "sweep": {"batch_sizes": [2], "requests_per_point": 6, "warmup_requests": 0,
                                              "scrape_interval_s": 0.2, **sweep}}


def test_chat_streams_deltas_and_counts_tokens_from_usage(vllm_server, endpoint_token, tmp_path):
    spec = parse_spec(_spec(vllm_server, tmp_path, [{"input_tokens": 24, "output_tokens": 10, "api": "chat"}]))
    lake = run_steps(spec, tmp_path)
    [point] = query(lake, "select status, api, ttft_p50_ms, itl_p50_ms, num_requests from points").to_pylist()
    assert point["status"] == "ok" and point["api"] == "chat" and point["num_requests"] == 6
    assert point["ttft_p50_ms"] > 0 and point["itl_p50_ms"] > 0  # timed from the streamed deltas
    rows = query(lake, "select requested_input_tokens, input_tokens, output_tokens, output_chunks, ok "
                       "from requests").to_pylist()
    assert all(r["ok"] and r["output_tokens"] == 10 for r in rows)  # usage, as asked for in stream_options
    # The client's count agrees: a delta carries one token, except when the server coalesces a few into one
    # chunk (vLLM's API process lagging its engine on a busy 2-core machine), never more chunks than tokens.
    assert all(1 <= r["output_chunks"] <= r["output_tokens"] for r in rows)
    assert sum(r["output_chunks"] == r["output_tokens"] for r in rows) >= len(rows) / 2
    # The chat template's role words are part of the prompt the server counted.
    assert all(r["input_tokens"] > r["requested_input_tokens"] == 24 for r in rows)


def test_a_jsonl_file_with_known_lengths_reproduces_them_in_the_requests_table(vllm_server, endpoint_token,
                                                                               tmp_path):
    factory = PromptFactory(vllm_server.tokenizer_dir, seed=5)
    known = [(12, 3), (20, 7), (33, 5), (40, 9), (17, 4), (28, 6)]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": factory.make(i), "output_tokens": o}) + "\n" for i, o in known))
    workload = {"input_tokens": 64, "output_tokens": 16, "dataset": {"format": "jsonl", "path": str(path)}}
    spec = parse_spec(_spec(vllm_server, tmp_path, [workload], batch_sizes=[1, 3]))
    lake = run_steps(spec, tmp_path)
    points = query(lake, "select point_id, status, workload_source from points order by point_id").to_pylist()
    assert [(p["status"], p["workload_source"]) for p in points] == [("ok", "jsonl")] * 2
    for point_id in ("cc-b1-i64-o16", "cc-b3-i64-o16"):
        rows = query(lake, f"select requested_input_tokens as ri, input_tokens as i, requested_output_tokens as ro, "
                           f"output_tokens as o from requests where point_id = '{point_id}'").to_pylist()
        assert sorted((r["i"], r["o"]) for r in rows) == sorted(known)  # the server's own usage counts
        assert all((r["ri"], r["ro"]) == (r["i"], r["o"]) for r in rows)


def test_the_bundled_sharegpt_sample_runs_as_chat(vllm_server, endpoint_token, tmp_path):
    workload = {"input_tokens": 96, "output_tokens": 32, "api": "chat",
                "dataset": {"format": "sharegpt", "path": "bundled:sample-sharegpt.jsonl", "min_prompt_tokens": 8}}
    spec = parse_spec(_spec(vllm_server, tmp_path, [workload]))
    lake = run_steps(spec, tmp_path)
    [point] = query(lake, "select status, workload_source from points").to_pylist()
    assert point == {"status": "ok", "workload_source": "sharegpt"}
    lengths = query(lake, "select requested_input_tokens as i, requested_output_tokens as o, output_tokens as got "
                          "from requests").to_pylist()
    assert len({r["i"] for r in lengths}) > 1 and all(8 <= r["i"] <= 96 for r in lengths)  # the file's own
    assert all(1 <= r["o"] <= 32 and r["got"] == r["o"] for r in lengths)
