"""ShareGPT-format JSON (a list) or JSONL: {"conversations": [{"from": "human", "value": ...}, {"from": "gpt",
"value": ...}, ...]}. The prompt is the first human turn, the output length the reply that follows it; with a
`conversation` in the workload, every conversation is replayed turn by turn (`build_conversations`)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servesweep.loadgen.sources.base import PromptMaker, SourceContext, SourceError
from servesweep.loadgen.sources.conversation import in_rounds
from servesweep.loadgen.sources.files import Record, dataset_path, from_records

HUMAN = ("human", "user")
MODEL = ("gpt", "assistant", "chatgpt", "bard", "model")


def conversations(path: Path) -> Iterator[list[tuple[str, str]]]:
    """Each record's turns as (role: user or assistant, text)."""
    for item in _items(path):
        turns = item.get("conversations") or item.get("messages") if isinstance(item, dict) else None
        if not isinstance(turns, list):
            continue
        out = []
        for turn in turns:
            if not isinstance(turn, dict):
                continue
            who = str(turn.get("from", turn.get("role", ""))).lower()
            text = turn.get("value", turn.get("content"))
            if isinstance(text, str) and (who in HUMAN or who in MODEL):
                out.append(("user" if who in HUMAN else "assistant", text))
        if out:
            yield out


def _items(path: Path) -> Iterator[Any]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, list):
        yield from data
        return
    if isinstance(data, dict):
        yield data
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{path}: line {number} is not JSON: {error}") from None


def records(path: Path) -> Iterator[Record]:
    for turns in conversations(path):
        for i, (role, text) in enumerate(turns):
            if role == "user":
                reply = turns[i + 1][1] if i + 1 < len(turns) and turns[i + 1][0] == "assistant" else None
                yield text, reply
                break


def build(context: SourceContext) -> PromptMaker:
    assert context.workload.dataset is not None
    return from_records(context, records(dataset_path(context.workload.dataset)))


def build_conversations(context: SourceContext) -> PromptMaker:
    """A ShareGPT file's conversations replayed turn by turn (a workload with both dataset and conversation):
    the human turns from the file, the answers from the server, each answer's max_tokens the file's gpt turn
    (dataset.output: dataset, clipped to output_tokens) or output_tokens (fixed)."""
    workload, tokenizer = context.workload, context.tokenizer
    dataset, spec = workload.dataset, workload.conversation
    assert dataset is not None and spec is not None
    overhead = tokenizer.count("")

    def answer_tokens(reply: str | None) -> int:
        if dataset.output == "fixed" or reply is None:
            return workload.output_tokens
        return max(1, min(tokenizer.count(reply) - overhead, workload.output_tokens))

    replayed = []
    for turns in conversations(dataset_path(dataset)):
        pairs = _exchanges(turns)[: spec.turns]
        if pairs and tokenizer.count(pairs[0][0]) >= dataset.min_prompt_tokens:
            replayed.append([(text, answer_tokens(reply)) for text, reply in pairs])
    if not replayed:
        raise SourceError(f"workload dataset {dataset.path}: no conversation with a human turn of at least "
                          f"{dataset.min_prompt_tokens} tokens")
    if dataset.shuffle:
        random.Random(context.seed).shuffle(replayed)
    requests = in_rounds(itertools.cycle(replayed), spec.conversations, workload.input_tokens, tokenizer.count)
    return lambda _: next(requests)


def _exchanges(turns: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    """(human message, the gpt reply after it or None) per human turn with text, in order."""
    out: list[tuple[str, str | None]] = []
    for i, (role, text) in enumerate(turns):
        if role == "user" and text.strip():
            reply = turns[i + 1][1] if i + 1 < len(turns) and turns[i + 1][0] == "assistant" else None
            out.append((text, reply))
    return out
