"""Conversations on the real vLLM server: each turn goes after the server's answer to the one before and
carries that answer's text, so later turns find earlier ones in vLLM's prefix cache (its own counters, read
as the points table's prefix_cache_hit_rate reads them) and turn 0 does not."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from servesweep.loadgen.client import Prompt, RequestRecord
from servesweep.loadgen.datagen import PromptFactory
from servesweep.loadgen.engine import Engine
from servesweep.loadgen.lanes import Lanes
from servesweep.loadgen.runner import LoadPlan, run_load
from servesweep.loadgen.sources import request_source
from servesweep.metrics.prometheus import parse_samples
from servesweep.metrics.summary import PREFIX_HITS, PREFIX_QUERIES
from servesweep.spec import WorkloadShape
from tests.integration.conftest import MAX_MODEL_LEN, TOKEN

pytestmark = pytest.mark.server

ANSWER_TOKENS, QUESTION_TOKENS = 256, 130  # a question longer than one 128-token block of vLLM's CPU cache


class CounterLog:
    """vLLM's prefix-cache counters polled every 20 ms: (perf_counter, queries, hits)."""

    def __init__(self, url: str) -> None:
        self.url, self.samples, self.block_sizes = url, [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _read(self) -> tuple[float, float]:
        request = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            samples = parse_samples(response.read().decode())
        self.block_sizes |= {labels["block_size"] for name, labels, _ in samples
                             if name == "vllm:cache_config_info" and "block_size" in labels}
        total = {PREFIX_QUERIES: 0.0, PREFIX_HITS: 0.0}
        for name, _, value in samples:
            if name in total:
                total[name] += value
        return total[PREFIX_QUERIES], total[PREFIX_HITS]

    def _poll(self) -> None:
        while not self._stop.is_set():
            before = time.perf_counter()
            self.samples.append((before, *self._read()))
            self._stop.wait(0.02)

    def __enter__(self) -> CounterLog:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(10)
        self.samples.append((time.perf_counter(), *self._read()))

    def at(self, moment: float) -> tuple[float, float]:
        """The counters as last read before `moment`."""
        return max((s for s in self.samples if s[0] < moment), key=lambda s: s[0])[1:]


def test_turns_carry_the_servers_answers_and_hit_the_prefix_cache(vllm_server, monkeypatch):
    sent: dict[str, Prompt] = {}
    answers: dict[tuple[int, int], str] = {}
    build, settle = Engine._request, Lanes.answered

    def capture(self: Engine, prompt: Prompt, request_id: str) -> bytes:
        sent[request_id] = prompt
        return build(self, prompt, request_id)

    def keep_answer(self: Lanes, record: RequestRecord) -> bool:
        answers[record.conversation, record.turn] = record.answer()
        return settle(self, record)

    monkeypatch.setattr(Engine, "_request", capture)
    monkeypatch.setattr(Lanes, "answered", keep_answer)
    workload = WorkloadShape(input_tokens=700, output_tokens=ANSWER_TOKENS, api="chat",
                             conversation={"turns": 2, "conversations": 3, "question_tokens": QUESTION_TOKENS})
    factory = PromptFactory(vllm_server.tokenizer_dir, seed=5)
    make = request_source(workload, factory, 5, MAX_MODEL_LEN)
    plan = LoadPlan(base_url=vllm_server.base_url, model=vllm_server.served_name, input_tokens=700,
                    output_tokens=ANSWER_TOKENS, concurrency=1, num_requests=6, api="chat",
                    headers=(("Authorization", f"Bearer {TOKEN}"),))
    with CounterLog(vllm_server.metrics_url) as counters:
        result = run_load(plan, make)
    records = sorted(result.records, key=lambda r: r.sent_at)
    assert [(r.conversation, r.turn) for r in records] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert all(r.ok and r.output_tokens == ANSWER_TOKENS for r in records), [r.error for r in records]
    assert counters.block_sizes == {"128"}  # the CPU build's KV cache block, what the hit rates below assume

    for record in records[3:]:  # every turn 1 holds its conversation's turn 0 and the server's answer to it
        question = sent[records[record.conversation].request_id].messages[0]
        answer = answers[record.conversation, 0]
        assert sent[record.request_id].messages[:2] == (question, ("assistant", answer))
        assert abs(factory.count(answer) - ANSWER_TOKENS) < ANSWER_TOKENS // 4  # the real ~256-token answer
        # The server saw it too: turn 1's prompt is turn 0's, its answer and a new question (and template).
        before = records[record.conversation]
        assert record.input_tokens > before.input_tokens + ANSWER_TOKENS + QUESTION_TOKENS - 20

    ends = [r.sent_at for r in records[1:]] + [float("inf")]
    rates = {0: [0.0, 0.0], 1: [0.0, 0.0]}  # turn -> [queries, hits] over its requests (one at a time)
    for record, end in zip(records, ends, strict=True):
        (q0, h0), (q1, h1) = counters.at(result.origin_perf + record.sent_at), counters.at(
            result.origin_perf + end)
        rates[record.turn][0] += q1 - q0
        rates[record.turn][1] += h1 - h0
    first, later = (hits / queries for queries, hits in rates.values())
    print(f"prefix-cache hit rate: turn 0 {first:.3f}, turn 1 {later:.3f} (queries {rates})")
    assert rates[0][0] > 0 and rates[1][0] > 0
    assert first < 0.05 and later > 0.4
