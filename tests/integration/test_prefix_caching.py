"""Shared prefixes and multi-turn conversations on the real vLLM server: its prefix cache is hit, and the
points table says how much (vLLM's own counters)."""

from __future__ import annotations

import pytest

from servesweep.lake.query import query
from servesweep.spec import parse_spec
from tests.integration.conftest import run_steps

pytestmark = pytest.mark.server


def test_shared_prefixes_and_conversations_hit_the_prefix_cache(vllm_server, endpoint_token, tmp_path):
    spec = parse_spec({
        "run_id": "prefix", "lake_uri": str(tmp_path / "lake"), "server": vllm_server.external(),
        "workloads": [
            {"name": "shared", "input_tokens": 160, "output_tokens": 4,
             "shared_prefix": {"num_prefixes": 2, "prefix_tokens": 128}},
            {"name": "chat-turns", "input_tokens": 500, "output_tokens": 8, "api": "chat",
             "conversation": {"turns": 3, "conversations": 4, "question_tokens": 150}},
            {"name": "plain", "input_tokens": 160, "output_tokens": 4},
        ],
        "sweep": {"batch_sizes": [2], "requests_per_point": 12, "warmup_requests": 0, "scrape_interval_s": 0.1},
    })
    lake = run_steps(spec, tmp_path)
    rows = {r["workload_name"]: r for r in query(lake, """
        select workload_name, workload_source, status, prefix_cache_queries, prefix_cache_hit_rate
        from points""").to_pylist()}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert rows["shared"]["workload_source"] == "shared-prefix"
    assert rows["chat-turns"]["workload_source"] == "conversation"
    # 2 prefixes of 128 tokens over 12 requests: after the first of each, 128 of 160 tokens are cached.
    assert rows["shared"]["prefix_cache_hit_rate"] > 0.3
    # vLLM's CPU build caches whole blocks of 128 tokens: turn 2 finds turn 1's first block, turn 3 two blocks.
    assert rows["chat-turns"]["prefix_cache_hit_rate"] > 0.2
    assert rows["plain"]["prefix_cache_queries"] > 0 and rows["plain"]["prefix_cache_hit_rate"] < 0.15
    turns = query(lake, "select requested_input_tokens as n, conversation, turn from requests "
                        "where point_id = 'cc-b2-chat-turns' order by request_index").to_pylist()
    # The history grows by an answer (8) and a question (150) a turn; the first turn counts the BOS token.
    assert [r["n"] for r in turns] == [151] * 4 + [151 + 158] * 4 + [151 + 2 * 158] * 4
    assert [(r["conversation"], r["turn"]) for r in turns] == [(c, t) for t in range(3) for c in range(4)]
    plain = query(lake, "select count(*) as n from requests where point_id = 'cc-b2-plain' and conversation "
                        "is null and turn is null").to_pylist()
    assert plain[0]["n"] == 12
