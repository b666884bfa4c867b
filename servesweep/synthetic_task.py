"""The synthetic, checkable task the trained model learns: multi-digit addition over word-level tokens.

One example is `a + b = s` with every digit a word of its own (the project's tokenizer is word-level), the
operands most significant digit first and the sum least significant digit first (the order a small model
learns carry propagation in), zero-padded to fixed widths so every answer has the same token count:

    3 4 7 + 5 8 1 = 8 2 9 0        (347 + 581 = 928, the sum written 8 2 9 0)

Which pairs are held out is a fixed rule of the pair itself (a hash), so training never sees them whatever
it samples; the held-out split shipped in `servesweep/data/tasks/` is `heldout_examples(...)` written out
(a test checks the two agree). It imports no servesweep package: the spec, the trainer and the accuracy step
all name it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

DIGITS = [str(d) for d in range(10)]
TASK_WORDS = [*DIGITS, "+", "="]
HELDOUT_PERCENT = 5  # pairs whose hash falls in the first 5 % are never trained on


@dataclass(frozen=True)
class Example:
    a: int
    b: int
    digits: int

    @property
    def prompt(self) -> str:
        """`a + b =`, digits spaced (what the model is asked)."""
        return f"{_spaced(self.a, self.digits)} + {_spaced(self.b, self.digits)} ="

    @property
    def answer(self) -> str:
        """The sum, least significant digit first, `digits + 1` digits, spaced (what it must write)."""
        return " ".join(reversed(str(self.a + self.b).zfill(self.digits + 1)))

    @property
    def text(self) -> str:
        return f"{self.prompt} {self.answer}"


def _spaced(value: int, width: int) -> str:
    return " ".join(str(value).zfill(width))


def is_heldout(a: int, b: int, digits: int) -> bool:
    """Whether the pair belongs to the held-out split (a fixed rule: training and evaluation agree on it)."""
    digest = hashlib.sha256(f"add{digits}:{a}:{b}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT


def train_examples(digits: int, count: int, seed: int) -> list[Example]:
    """`count` training examples (held-out pairs skipped), drawn with `seed`."""
    rng = random.Random(seed)
    top = 10**digits
    out: list[Example] = []
    while len(out) < count:
        a, b = rng.randrange(top), rng.randrange(top)
        if not is_heldout(a, b, digits):
            out.append(Example(a, b, digits))
    return out


def heldout_examples(digits: int, count: int, seed: int = 1234) -> list[Example]:
    """The first `count` held-out pairs in a seeded order (distinct)."""
    rng = random.Random(seed)
    top = 10**digits
    seen: set[tuple[int, int]] = set()
    out: list[Example] = []
    while len(out) < count:
        a, b = rng.randrange(top), rng.randrange(top)
        if (a, b) not in seen and is_heldout(a, b, digits):
            seen.add((a, b))
            out.append(Example(a, b, digits))
    return out
