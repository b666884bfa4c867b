"""Multi-turn conversations: each request is one turn; the engine sends it once the turn before was answered,
with the earlier user messages and the server's own answers before the new message (servesweep.loadgen.lanes).

`conversations` lanes run side by side, each a line of conversations of `turns` turns. Turns are made in rounds
(turn 0 of every lane, then turn 1, ...); a conversation whose history would outgrow input_tokens ends early,
and its lane starts the next one. A turn's requested input tokens are what its prompt holds if every answer
is as long as asked: the history's user messages and max_tokens of each earlier answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from servesweep.loadgen.client import Prompt
from servesweep.loadgen.sources.base import PromptMaker, SourceContext, SourceError

Turns = list[tuple[str, int]]  # one conversation: (user message, max_tokens of its answer) per turn
Counter = Callable[[str], int]  # a text's tokens as the server counts them
TRIES = 1000  # conversations looked at for one that fits before giving up


def build(context: SourceContext) -> PromptMaker:
    workload, tokenizer = context.workload, context.tokenizer
    spec = workload.conversation
    assert spec is not None
    overhead = tokenizer.count("")
    question = spec.question_tokens or max(1, workload.input_tokens // spec.turns)

    def conversation() -> Turns:  # `question` words: make() counts the special tokens too
        return [(tokenizer.make(question + overhead), workload.output_tokens) for _ in range(spec.turns)]

    turns = in_rounds(iter(conversation, None), spec.conversations, workload.input_tokens, tokenizer.count)
    return lambda _: next(turns)


def in_rounds(conversations: Iterator[Turns], lanes: int, input_tokens: int, count: Counter) -> Iterator[Prompt]:
    """The turns of `conversations` as requests, `lanes` conversations at a time, round by round; a turn whose
    prompt would pass `input_tokens` ends its conversation there (a first turn that long: the conversation is
    left out). Conversations are numbered from 0 in the order they start."""
    numbered = 0
    while True:
        group = []
        for _ in range(lanes):
            group.append((numbered, _next_fitting(conversations, input_tokens, count)))
            numbered += 1
        for turn in range(max(len(turns) for _, turns in group)):
            for lane, (number, turns) in enumerate(group):
                if turn < len(turns):
                    text, output, length = turns[turn]
                    yield Prompt(length, output, text=text, messages=(("user", text),), conversation=number,
                                 turn=turn, lane=lane)


def _next_fitting(conversations: Iterator[Turns], input_tokens: int, count: Counter) -> list[tuple[str, int, int]]:
    for _ in range(TRIES):
        bounded = _bounded(next(conversations), input_tokens, count)
        if bounded:
            return bounded
    raise SourceError(f"no conversation's first turn fits in input_tokens {input_tokens} ({TRIES} tried)")


def _bounded(turns: Turns, input_tokens: int, count: Counter) -> list[tuple[str, int, int]]:
    """The turns that fit, each with its prompt's expected length (the first turn's special tokens once)."""
    out: list[tuple[str, int, int]] = []
    length = 0
    for text, output in turns:
        length += count(text) if not out else out[-1][1] + count(text) - count("")
        if length > input_tokens:
            break
        out.append((text, output, length))
    return out
