"""What the file sources share: reading a path, counting and filtering prompts, output lengths, order."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import servesweep
from servesweep.loadgen.client import Prompt
from servesweep.loadgen.lengths import LengthSampler
from servesweep.loadgen.sources.base import PromptMaker, SourceContext, SourceError
from servesweep.spec import BUNDLED, DatasetSpec

Record = tuple[str, int | str | None]  # (prompt, output length in tokens, or a reference answer, or none)


def dataset_path(dataset: DatasetSpec) -> Path:
    """The dataset's file or directory; 'bundled:NAME' is servesweep/data/NAME."""
    if dataset.path.startswith(BUNDLED):
        path = Path(servesweep.__file__).resolve().parent / "data" / dataset.path.removeprefix(BUNDLED)
    else:
        path = Path(dataset.path).expanduser()
    if not path.exists():
        raise SourceError(f"workload dataset.path: {dataset.path} does not exist where this step runs")
    return path


def from_records(context: SourceContext, records: Iterable[Record]) -> PromptMaker:
    """Requests from (prompt, output) records: prompts counted with the model's tokenizer and kept when within
    [min_prompt_tokens, input_tokens] and the server's context; then shuffled (seeded) and cycled."""
    workload, tokenizer = context.workload, context.tokenizer
    dataset = workload.dataset
    assert dataset is not None
    overhead = tokenizer.count("")
    outputs = LengthSampler(workload.output_distribution, workload.output_tokens, 1, workload.output_tokens,
                            context.seed + 1)
    prompts: list[Prompt] = []
    seen = 0
    for text, answer in records:
        seen += 1
        if not text.strip():
            continue
        length = tokenizer.count(text)
        if not dataset.min_prompt_tokens <= length <= workload.input_tokens:
            continue
        if dataset.output == "fixed" or (dataset.output == "dataset" and answer is None):
            output = workload.output_tokens
        elif dataset.output == "distribution":
            output = outputs.draw()
        elif isinstance(answer, int):
            output = answer
        else:
            output = tokenizer.count(str(answer)) - overhead
        output = max(1, min(output, workload.output_tokens, context.max_model_len - length))
        if length + output <= context.max_model_len:
            prompts.append(Prompt(length, output, text=text))
    if not prompts:
        raise SourceError(f"workload dataset {dataset.path}: none of its {seen} records has a prompt of "
                          f"{dataset.min_prompt_tokens}..{workload.input_tokens} tokens")
    if dataset.shuffle:
        random.Random(context.seed).shuffle(prompts)
    position = 0

    def make(_: int) -> Prompt:
        nonlocal position
        prompt = prompts[position % len(prompts)]
        position += 1
        return prompt

    return make
