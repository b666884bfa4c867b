"""Data sources without a server: file formats, filters, output lengths, distributions, the bundled sample."""

from __future__ import annotations

import itertools
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from servesweep.loadgen.client import Prompt, request_payload
from servesweep.loadgen.datagen import PromptFactory
from servesweep.loadgen.lengths import LengthSampler
from servesweep.loadgen.sources import SourceError, request_source, source_names
from servesweep.loadgen.sources.sample import bundled_path, lines
from servesweep.loadgen.sse import TokenScanner
from servesweep.spec import LengthDistribution, WorkloadShape


@pytest.fixture(scope="module")
def factory(tiny_model) -> PromptFactory:
    return PromptFactory(tiny_model.path, seed=1)


def _make(workload: dict, factory: PromptFactory, n: int, max_model_len: int = 1024) -> list[Prompt]:
    shape = WorkloadShape.model_validate(workload)
    make = request_source(shape, factory, 3, max_model_len)
    return [make(shape.input_tokens) for _ in range(n)]  # what the load generator asks: the point's length


def test_the_registry_has_one_module_per_source():
    assert source_names() == ["synthetic", "sharegpt", "jsonl", "hf", "shared-prefix", "conversation",
                              "sharegpt-conversation"]


def test_synthetic_prompts_have_exact_lengths_and_distributions_vary_them(factory):
    fixed = _make({"input_tokens": 20, "output_tokens": 5}, factory, 4)
    assert {(p.input_tokens, p.output_tokens) for p in fixed} == {(20, 5)}
    assert all(factory.count(p.text) == 20 for p in fixed)
    varied = _make({"input_tokens": 40, "output_tokens": 8,
                    "input_distribution": {"kind": "uniform", "min": 10, "max": 60},
                    "output_distribution": {"kind": "lognormal", "sigma": 0.5, "max": 30}}, factory, 40)
    assert all(10 <= p.input_tokens <= 60 and factory.count(p.text) == p.input_tokens for p in varied)
    assert len({p.input_tokens for p in varied}) > 10 and all(1 <= p.output_tokens <= 30 for p in varied)


@pytest.mark.parametrize("kind, extra", [("normal", {"stddev": 5.0}), ("lognormal", {"sigma": 0.3}),
                                         ("uniform", {"min": 5, "max": 9}), ("fixed", {})])
def test_length_samplers_are_seeded_and_clipped(kind, extra):
    distribution = LengthDistribution.model_validate({"kind": kind, **extra})
    draws = [LengthSampler(distribution, 20, 2, 25, seed=7).draw() for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same first draw
    sampler = LengthSampler(distribution, 20, 2, 25, seed=7)
    assert all(2 <= sampler.draw() <= 25 for _ in range(200))


def test_jsonl_prompts_keep_their_lengths_and_are_filtered(factory, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": factory.make(n), "output_tokens": o})
                              for n, o in [(5, 2), (30, 40), (80, 3)]) + "\n")
    prompts = _make({"input_tokens": 50, "output_tokens": 16, "dataset": {
        "format": "jsonl", "path": str(path), "min_prompt_tokens": 6, "shuffle": False}}, factory, 3)
    assert [(p.input_tokens, p.output_tokens) for p in prompts] == [(30, 16)] * 3  # 5 and 80 left out; clipped


def test_sharegpt_json_takes_the_first_human_turn_and_its_reply(factory, tmp_path):
    path = tmp_path / "s.json"
    reply = factory.make(9)
    path.write_text(json.dumps([{"conversations": [{"from": "system", "value": "x"},
                                                   {"from": "human", "value": factory.make(12)},
                                                   {"from": "gpt", "value": reply}]}]))
    [prompt] = _make({"input_tokens": 64, "output_tokens": 32,
                      "dataset": {"format": "sharegpt", "path": str(path)}}, factory, 1)
    assert (prompt.input_tokens, prompt.output_tokens) == (12, 9 - factory.count("") )


def test_a_local_hf_dataset_directory_and_a_parquet_file(factory, tmp_path):
    table = pa.table({"question": [factory.make(10), factory.make(14)], "n": [3, 4]})
    arrow = str(tmp_path / "data-00000-of-00001.arrow")  # what save_to_disk writes
    with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    pq.write_table(table, tmp_path / "d.parquet")
    for path in (str(tmp_path), str(tmp_path / "d.parquet")):
        prompts = _make({"input_tokens": 64, "output_tokens": 8, "dataset": {
            "format": "hf", "path": path, "prompt_column": "question", "output_column": "n", "shuffle": False}},
            factory, 2)
        assert [(p.input_tokens, p.output_tokens) for p in prompts] == [(10, 3), (14, 4)]


def test_a_dataset_with_no_usable_prompt_says_so(factory, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": factory.make(90)}) + "\n")
    with pytest.raises(SourceError, match="none of its 1 records has a prompt of 2..50 tokens"):
        _make({"input_tokens": 50, "output_tokens": 8, "dataset": {"format": "jsonl", "path": str(path)}}, factory, 1)
    with pytest.raises(SourceError, match="does not exist"):
        _make({"input_tokens": 50, "output_tokens": 8, "dataset": {"format": "jsonl", "path": "/nope"}}, factory, 1)


def test_the_bundled_sample_is_what_its_generator_writes(factory):
    assert bundled_path().read_text() == "\n".join(lines()) + "\n"
    prompts = _make({"input_tokens": 128, "output_tokens": 64,
                     "dataset": {"format": "sharegpt", "path": "bundled:sample-sharegpt.jsonl"}}, factory, 50)
    assert len({p.text for p in prompts}) > 30


def test_chat_payload_and_deltas():
    payload = request_payload("m", Prompt(4, 3, text="hi there"), "chat")
    assert payload["messages"] == [{"role": "user", "content": "hi there"}] and "prompt" not in payload
    assert payload["max_tokens"] == 3 and payload["stream_options"] == {"include_usage": True}
    scanner = TokenScanner()
    events = [b'{"choices":[{"delta":{"role":"assistant","content":""}}]}', b'{"choices":[{"delta":{"content":"a"}}]}',
              b'{"choices":[{"delta":{"content": "b"}}]}', b'{"choices":[],"usage":{"completion_tokens":2}}']
    assert sum(scanner.feed(b"data: " + e + b"\n\n") for e in events) == 2
    assert scanner.usage == {"completion_tokens": 2}


def test_shared_prefixes_take_turns_and_each_question_is_new(factory):
    prompts = _make({"input_tokens": 60, "output_tokens": 4,
                     "shared_prefix": {"num_prefixes": 2, "prefix_tokens": 40}}, factory, 4)
    assert all(p.input_tokens == 60 and factory.count(p.text) == 60 for p in prompts)
    heads = [" ".join(p.text.split()[:39]) for p in prompts]  # 39 words + the BOS token: the prefix
    assert heads[0] == heads[2] != heads[1] == heads[3]
    assert len({p.text for p in prompts}) == 4


def test_conversation_turns_come_in_rounds_of_lanes_with_their_expected_lengths(factory):
    prompts = _make({"input_tokens": 200, "output_tokens": 5, "api": "chat",
                     "conversation": {"turns": 3, "conversations": 2, "question_tokens": 10}}, factory, 8)
    # Turn 0 of both lanes, then turn 1, then turn 2; then the next two conversations on the same lanes.
    assert [(p.conversation, p.turn, p.lane) for p in prompts] == [
        (0, 0, 0), (1, 0, 1), (0, 1, 0), (1, 1, 1), (0, 2, 0), (1, 2, 1), (2, 0, 0), (3, 0, 1)]
    # Each carries only its new user message: the engine adds the history with the server's answers.
    assert all(p.messages == (("user", p.text),) and factory.count(p.text) == 11 for p in prompts)
    # Expected prompt lengths: the history's questions (10 tokens each, BOS once) and 5-token answers.
    assert [p.input_tokens for p in prompts[:6]] == [11, 11, 26, 26, 41, 41]
    assert len({p.text for p in prompts}) == 8


def test_a_conversation_that_would_outgrow_input_tokens_ends_early(factory):
    prompts = _make({"input_tokens": 30, "output_tokens": 5,
                     "conversation": {"turns": 4, "conversations": 1, "question_tokens": 10}}, factory, 4)
    assert [(p.conversation, p.turn, p.input_tokens) for p in prompts] == [(0, 0, 11), (0, 1, 26), (1, 0, 11),
                                                                          (1, 1, 26)]


def test_sharegpt_conversations_replay_the_files_human_turns(factory, tmp_path):
    path = tmp_path / "chats.jsonl"
    chats = [[("human", "one two three"), ("gpt", "four five"), ("human", "six seven"), ("gpt", "eight"),
              ("human", "nine")],
             [("human", "ten eleven"), ("gpt", "twelve thirteen fourteen fifteen sixteen seventeen")]]
    path.write_text("".join(json.dumps({"conversations": [{"from": w, "value": v} for w, v in chat]}) + "\n"
                            for chat in chats))
    shape = {"input_tokens": 100, "output_tokens": 4, "conversation": {"turns": 2, "conversations": 2},
             "dataset": {"format": "sharegpt", "path": str(path), "shuffle": False}}
    assert WorkloadShape.model_validate(shape).source == "sharegpt-conversation"
    prompts = _make(shape, factory, 3)
    assert [(p.text, p.conversation, p.turn, p.lane) for p in prompts] == [
        ("one two three", 0, 0, 0), ("ten eleven", 1, 0, 1), ("six seven", 0, 1, 0)]
    overhead = factory.count("")
    # max_tokens: the gpt turn's length, clipped to output_tokens; turn 1 expects turn 0 and its answer.
    assert [p.output_tokens for p in prompts] == [factory.count("four five") - overhead, 4,
                                                  factory.count("eight") - overhead]
    assert prompts[2].input_tokens == prompts[0].input_tokens + prompts[0].output_tokens + \
        factory.count("six seven") - overhead
    with pytest.raises(ValueError, match="replays a sharegpt dataset"):
        WorkloadShape.model_validate(shape | {"dataset": {"format": "jsonl", "path": str(path)}})


def test_the_bundled_sample_replays_its_multi_turn_conversations(factory):
    prompts = _make({"input_tokens": 800, "output_tokens": 64, "api": "chat",
                     "dataset": {"format": "sharegpt", "path": "bundled:sample-sharegpt.jsonl"},
                     "conversation": {"turns": 4, "conversations": 8}}, factory, 40)
    assert {p.turn for p in prompts} >= {0, 1, 2}  # the sample has conversations of 1 to 4 human turns
    by_conversation: dict[int, list[Prompt]] = {}
    for p in prompts:
        by_conversation.setdefault(p.conversation, []).append(p)
    for turns in by_conversation.values():
        assert [p.turn for p in turns] == list(range(len(turns)))
        assert all(later.input_tokens > earlier.input_tokens for earlier, later in itertools.pairwise(turns))
