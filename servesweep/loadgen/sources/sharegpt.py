"""ShareGPT-format JSON (a list) or JSONL: {"conversations": [{"from": "human", "value": ...}, {"from": "gpt",
"value": ...}, ...]}. The prompt is the first human turn, the output length the reply that follows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servesweep.loadgen.sources import PromptMaker, SourceContext, SourceError
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
