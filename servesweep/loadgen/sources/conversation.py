"""Multi-turn conversations: each request is one turn carrying the conversation's earlier turns and answers.

The answers are synthetic text of output_tokens tokens standing in for the model's reply (the load generator
does not keep generated text), so what a server caches from turn k's prompt is the prefix of turn k + 1's.
Requests go out in rounds (turn 1 of every conversation, then turn 2, ...); after the last turn a fresh set of
conversations starts. Completions get the history as one text, chat as messages.
"""

from __future__ import annotations

from servesweep.loadgen.client import Prompt
from servesweep.loadgen.sources import PromptMaker, SourceContext


def build(context: SourceContext) -> PromptMaker:
    workload, tokenizer = context.workload, context.tokenizer
    spec = workload.conversation
    assert spec is not None
    overhead = tokenizer.count("")
    question = spec.question_tokens or max(1, workload.input_tokens // spec.turns)
    answer = workload.output_tokens
    output = workload.output_tokens
    histories: list[list[tuple[str, str]]] = []
    sent = 0

    def words(tokens: int) -> str:
        return tokenizer.make(tokens + overhead)  # `tokens` words: make() counts the special tokens too

    def make(_: int) -> Prompt:
        nonlocal histories, sent
        turn, index = divmod(sent % (spec.turns * spec.conversations), spec.conversations)
        if turn == 0 and index == 0:
            histories = [[] for _ in range(spec.conversations)]
        sent += 1
        history = histories[index]
        if history:
            history.append(("assistant", words(answer)))
        history.append(("user", words(question)))
        text = " ".join(content for _, content in history)
        length = tokenizer.count(text)
        if length > workload.input_tokens:  # the history outgrew the prompt bound: start this one again
            history[:] = [("user", words(question))]
            text = history[0][1]
            length = tokenizer.count(text)
        return Prompt(length, output, text=text, messages=tuple(history))

    return make
