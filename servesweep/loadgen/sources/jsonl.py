"""Plain JSONL: one {"prompt": "...", "output_tokens": N} per line (output_tokens optional)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from servesweep.loadgen.sources.base import PromptMaker, SourceContext, SourceError
from servesweep.loadgen.sources.files import Record, dataset_path, from_records


def records(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{path}: line {number} is not JSON: {error}") from None
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise SourceError(f"{path}: line {number} has no string `prompt`")
            output = item.get("output_tokens")
            if output is not None and (not isinstance(output, int) or isinstance(output, bool) or output < 1):
                raise SourceError(f"{path}: line {number}: output_tokens must be a positive integer")
            yield item["prompt"], output


def build(context: SourceContext) -> PromptMaker:
    assert context.workload.dataset is not None
    return from_records(context, records(dataset_path(context.workload.dataset)))
