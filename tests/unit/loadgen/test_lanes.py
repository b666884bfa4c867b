"""Conversation lanes against the zero server: a turn goes only after the answer to the turn before, carries
the earlier turns with the server's actual answers, is scheduled at max(slot free, answer arrived), and a failed
turn ends its conversation (its later turns recorded as not sent)."""

from __future__ import annotations

import itertools

import pytest

from benchmarks.loadgen.zero_server import token_words
from components.sweep import request_rows
from servesweep.loadgen.client import Prompt, RequestRecord
from servesweep.loadgen.engine import Engine
from servesweep.loadgen.runner import LoadPlan, run_load
from servesweep.loadgen.sources.conversation import in_rounds
from servesweep.sweep_plan import SweepPoint
from tests.support.zero_server import running_zero_server

TOKENS = 6
ANSWER = "".join(" " + word for word in token_words(1024)[:TOKENS])  # what the zero server streams, always


@pytest.fixture(scope="module")
def zero_server(tmp_path_factory):
    with running_zero_server(tmp_path_factory, 5.0, 3.0) as server:
        yield server


def _turns(lanes: int, turns: int, failing: tuple[int, int] | None = None):
    """The synthetic source's own round order over `lanes` lanes; the turn `failing` (conversation, turn) asks
    for 0 tokens, which the zero server answers with 16: a wrong length, so a failed turn."""
    numbers = itertools.count()

    def conversation() -> list[tuple[str, int]]:
        n = next(numbers)
        return [(f"q{n} t{t}", 0 if (n, t) == failing else TOKENS) for t in range(turns)]

    made = in_rounds(iter(conversation, None), lanes, 10_000, lambda text: len(text.split()) + 1)
    return lambda _: next(made)


def _plan(server, **overrides) -> LoadPlan:
    fields = dict(base_url=server.base_url, model="zero", input_tokens=4, output_tokens=TOKENS, concurrency=4,
                  num_requests=9, api="chat")
    return LoadPlan(**{**fields, **overrides})


@pytest.fixture
def sent(monkeypatch) -> dict[str, Prompt]:
    """Each request's prompt as the engine built it, by request id (the in-process worker's)."""
    built: dict[str, Prompt] = {}
    original = Engine._request

    def capture(self: Engine, prompt: Prompt, request_id: str) -> bytes:
        built[request_id] = prompt
        return original(self, prompt, request_id)

    monkeypatch.setattr(Engine, "_request", capture)
    return built


def _by_turn(records: list[RequestRecord]) -> dict[tuple[int, int], RequestRecord]:
    return {(r.conversation, r.turn): r for r in records if r.conversation is not None}


def test_each_turn_follows_its_answer_and_carries_the_servers_answers(zero_server, sent):
    result = run_load(_plan(zero_server), _turns(lanes=3, turns=3))
    turns = _by_turn(result.records)
    assert sorted(turns) == [(c, t) for c in range(3) for t in range(3)]
    assert all(r.ok for r in turns.values()), [r.error for r in turns.values()]
    for (conversation, turn), record in turns.items():
        prompt = sent[record.request_id]
        expected = []
        for t in range(turn):
            expected += [("user", f"q{conversation} t{t}"), ("assistant", ANSWER)]
        assert prompt.messages == (*expected, ("user", f"q{conversation} t{turn}"))
        if turn:
            before = turns[conversation, turn - 1]
            # Sent only after the answer before it ended; scheduled then (a free slot waited for it), no lag.
            assert before.token_times[-1] <= record.scheduled_at <= record.sent_at
            assert record.sent_at - record.scheduled_at < 0.05


def test_one_slot_for_two_lanes_schedules_each_turn_when_the_slot_frees(zero_server):
    result = run_load(_plan(zero_server, concurrency=1, num_requests=4, api="completions"), _turns(2, 2))
    records = sorted(result.records, key=lambda r: r.sent_at)
    assert [(r.conversation, r.turn) for r in records] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    for before, record in itertools.pairwise(records):
        # max(slot free, answer arrived): the slot frees last for (1, 0) and both at once for the rest.
        assert before.token_times[-1] <= record.scheduled_at <= record.sent_at
        assert record.scheduled_at - before.token_times[-1] < 0.05


def test_a_failed_turn_ends_its_conversation_and_the_lane_goes_on(zero_server, sent):
    plan = _plan(zero_server, concurrency=2, num_requests=10, max_consecutive_failures=None, max_error_rate=None)
    result = run_load(plan, _turns(lanes=2, turns=3, failing=(0, 1)))
    turns = _by_turn(result.records)
    assert "server produced 16 of 0 tokens" in (turns[0, 1].error or "")
    skipped = turns[0, 2]
    assert skipped.error is not None and skipped.error.startswith("not sent: conversation ended (turn 1 failed")
    assert skipped.request_id not in sent and not skipped.token_times
    assert all(turns[1, t].ok for t in range(3))
    # Lane 0 goes on with the next conversation (2), which starts from nothing.
    assert turns[2, 0].ok and sent[turns[2, 0].request_id].messages == (("user", "q2 t0"),)
    rows = request_rows("run", SweepPoint(point_id="p", deployment_id="d", sweep_mode="client_concurrency",
                                          batch_size=2, concurrency=2, input_tokens=4, output_tokens=TOKENS),
                        result.records, result.started_unix)
    assert sorted((r["conversation"], r["turn"], r["ok"]) for r in rows)[:4] == [
        (0, 0, True), (0, 1, False), (0, 2, False), (1, 0, True)]


def test_open_loop_turns_wait_for_their_answer_not_counted_as_lag(zero_server):
    # 200 arrivals/s: every later turn arrives before the answer to the one before it has ended.
    result = run_load(_plan(zero_server, concurrency=None, rate=200.0, num_requests=6), _turns(2, 3))
    turns = _by_turn(result.records)
    assert sorted(turns) == [(c, t) for c in range(2) for t in range(3)] and all(r.ok for r in turns.values())
    for (conversation, turn), record in turns.items():
        if turn:
            before = turns[conversation, turn - 1]
            assert before.token_times[-1] <= record.scheduled_at <= record.sent_at
            assert record.sent_at - record.scheduled_at < 0.05


def test_two_workers_keep_each_lane_whole_and_carry_the_turns(zero_server):
    result = run_load(_plan(zero_server, workers=2, num_requests=12), _turns(lanes=4, turns=3))
    turns = _by_turn(result.records)
    assert sorted(turns) == [(c, t) for c in range(4) for t in range(3)] and all(r.ok for r in turns.values())
    for (conversation, turn), record in turns.items():
        if turn:
            assert turns[conversation, turn - 1].token_times[-1] <= record.sent_at


def test_a_timed_warm_up_sends_turns_alone_and_the_lanes_start_after_it(zero_server):
    result = run_load(_plan(zero_server, num_requests=6, warmup_s=0.1, warmup_requests=1), _turns(2, 3))
    warm = [r for r in result.records if r.warmup]
    assert warm and all(r.conversation is None and r.ok for r in warm)  # later conversations' turns, sent alone
    turns = _by_turn(result.records)
    assert sorted(turns) == [(c, t) for c in range(2) for t in range(3)] and all(r.ok for r in turns.values())
    assert min(r.sent_at for r in turns.values()) >= max(r.sent_at for r in warm)
