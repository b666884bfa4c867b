"""Conversation lanes: the turns of a conversation go one after another, each with the server's own answers.

A source marks each request of a conversation with its conversation, turn and lane (`Prompt`). A lane is a
line of conversations, one after another; a lane's next turn becomes ready only once its turn before was
answered, at max(when it was due, when that answer arrived), so schedule lag stays honest: a turn that
waited for an answer was not late. Its prompt is then the conversation's earlier user messages with the
server's actual answers, and the new message: chat messages with roles, or for completions their texts
joined by a space (as the synthetic source always did). A turn that fails ends its conversation: its later
turns are recorded as not sent, and the lane goes on with its next conversation.
"""

from __future__ import annotations

from collections import deque

from servesweep.loadgen.client import Prompt, RequestRecord

Ready = tuple[int, float]  # (the request's index in the job, the time it may go: s since the origin)


class Lanes:
    """Which conversation turns may go now, and each live conversation's history (one worker's share)."""

    def __init__(self) -> None:
        self.ready: deque[Ready] = deque()
        self._queued: dict[int, deque[Ready]] = {}  # lane -> turns waiting for the lane's turn in flight
        self._busy: set[int] = set()  # lanes with a turn taken and not yet answered (or skipped)
        self._history: dict[int, list[tuple[str, str]]] = {}  # conversation -> (role, content) so far
        self._current: dict[int, int] = {}  # lane -> the conversation it is on
        self.ended: dict[int, str] = {}  # conversation -> why it ended before its last turn

    def add(self, index: int, lane: int, due: float) -> None:
        """A turn that is due at `due`: ready now if its lane is free, else queued behind the lane's turn."""
        if lane in self._busy:
            self._queued.setdefault(lane, deque()).append((index, due))
        else:
            self._busy.add(lane)
            self.ready.append((index, due))

    def release(self, lane: int, at: float) -> None:
        """The lane's turn ended at `at` (answered, failed or skipped): its next turn, if any, is ready."""
        queued = self._queued.get(lane)
        if queued:
            index, due = queued.popleft()
            self.ready.append((index, max(due, at)))
        else:
            self._busy.discard(lane)

    @property
    def pending(self) -> bool:
        """Turns not yet sent (ready, or waiting for an answer)."""
        return bool(self.ready or self._busy)

    def compose(self, prompt: Prompt) -> Prompt:
        """The full request of a turn: the conversation so far and the new user message."""
        assert prompt.conversation is not None
        previous = self._current.get(prompt.lane)
        if previous is not None and previous != prompt.conversation:
            self._history.pop(previous, None)  # the lane moved on: that conversation is over
        self._current[prompt.lane] = prompt.conversation
        history = self._history.setdefault(prompt.conversation, [])
        history.append(("user", prompt.text))
        return Prompt(prompt.input_tokens, prompt.output_tokens, text=" ".join(content for _, content in history),
                      messages=tuple(history), conversation=prompt.conversation, turn=prompt.turn, lane=prompt.lane)

    def answered(self, record: RequestRecord) -> bool:
        """Record a turn's end: its answer joins the history when it is ok (the record is settled here, not
        after the point: the next turn needs the verdict now); else the conversation ends."""
        conversation = record.conversation
        assert conversation is not None
        record.settle()
        if record.ok:
            self._history.setdefault(conversation, []).append(("assistant", record.answer()))
        else:
            self.ended[conversation] = f"turn {record.turn} failed: {record.error or 'no answer'}"[:200]
            self._history.pop(conversation, None)
        record.answer_chunks = None  # the text lives on in the history only
        return record.ok
