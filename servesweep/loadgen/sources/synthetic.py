"""Synthetic prompts of exact token lengths (the model's own tokenizer), lengths fixed or drawn (seeded)."""

from __future__ import annotations

from servesweep.loadgen.client import Prompt
from servesweep.loadgen.lengths import LengthSampler
from servesweep.loadgen.sources.base import PromptMaker, SourceContext


def build(context: SourceContext) -> PromptMaker:
    workload, tokenizer = context.workload, context.tokenizer
    room = context.max_model_len
    inputs = LengthSampler(workload.input_distribution, workload.input_tokens, 2, room - 1, context.seed)
    outputs = LengthSampler(workload.output_distribution, workload.output_tokens, 1, room - 2, context.seed + 1)

    def make(asked: int) -> Prompt:
        """`asked`: the length the point asks for (a trace's own); a distribution draws its own instead."""
        output = outputs.draw()
        length = min(asked if workload.input_distribution is None else inputs.draw(), room - output)
        return Prompt(length, output, text=tokenizer.make(length))

    return make
