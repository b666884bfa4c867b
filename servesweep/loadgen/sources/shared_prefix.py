"""Shared prefixes: N distinct system prompts of P tokens, each request one of them (in turn) and a question
of its own, so input_tokens - P tokens of every prompt are new and P may come from the prefix cache."""

from __future__ import annotations

from servesweep.loadgen.client import Prompt
from servesweep.loadgen.sources.base import PromptMaker, SourceContext


def build(context: SourceContext) -> PromptMaker:
    workload, tokenizer = context.workload, context.tokenizer
    shared = workload.shared_prefix
    assert shared is not None
    overhead = tokenizer.count("")
    # A prefix of P tokens counts the prompt's special tokens; the question adds its words only.
    prefixes = [tokenizer.make(max(shared.prefix_tokens, overhead + 1)) for _ in range(shared.num_prefixes)]
    question_tokens = max(1, workload.input_tokens - shared.prefix_tokens)
    output = workload.output_tokens
    sent = 0

    def make(_: int) -> Prompt:
        nonlocal sent
        text = prefixes[sent % len(prefixes)] + " " + tokenizer.make(question_tokens + overhead)
        sent += 1
        return Prompt(tokenizer.count(text), output, text=text)

    return make
