"""The held-out split of the synthetic task as files: what the accuracy step scores, shipped in the package.

`servesweep/data/tasks/addition-<digits>.jsonl` holds one held-out problem per line (servesweep.synthetic_task:
`heldout_examples`), written by `write_split` and checked against the generator by a test:

    {"prompt": "3 4 + 5 8 =", "answer": "2 9 0", "text": "3 4 + 5 8 = 2 9 0", "context_chars": 11}

The same lines are both sets: exact match asks `prompt` and compares `answer`; perplexity scores `text`, the
tokens after its first `context_chars` characters (the answer: the operands are uniform noise the model was
never trained to predict, so their log-probabilities say nothing about what it learned). The default model's
split (2 digits) is shipped; another digit count's is generated at run time by the same function. The lm-eval
task (`addition.yaml` next to it) is a template whose data file the accuracy step fills in.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from servesweep.synthetic_task import HELDOUT_PERCENT, heldout_examples, is_heldout

SPLIT_ITEMS = 256  # problems per split (fewer where the digit count has fewer held-out pairs)
TASKS_DIR = "tasks"
LMEVAL_TEMPLATE = "addition.yaml"


def split_size(digits: int) -> int:
    """SPLIT_ITEMS, or every held-out pair when there are fewer (1-digit operands: 100 pairs)."""
    if 10 ** (2 * digits) * HELDOUT_PERCENT // 100 > 4 * SPLIT_ITEMS:
        return SPLIT_ITEMS
    top = 10**digits
    return min(SPLIT_ITEMS, sum(is_heldout(a, b, digits) for a in range(top) for b in range(top)))


def split_lines(digits: int) -> list[dict[str, Any]]:
    """The held-out split as the rows written to its file."""
    rows = []
    for example in heldout_examples(digits, split_size(digits)):
        rows.append({"prompt": example.prompt, "answer": example.answer, "text": example.text,
                     "context_chars": len(example.prompt)})
    return rows


def write_split(digits: int, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row) + "\n" for row in split_lines(digits)))
    return out


def shipped_split(digits: int) -> Path | None:
    """The packaged split file for `digits`, if one is shipped."""
    path = Path(str(resources.files("servesweep") / "data" / TASKS_DIR / f"addition-{digits}.jsonl"))
    return path if path.exists() else None


def split_file(digits: int, scratch: str | Path) -> Path:
    """The split for `digits`: the shipped file, else one generated into `scratch`."""
    return shipped_split(digits) or write_split(digits, Path(scratch) / f"addition-{digits}.jsonl")


def read_split(path: str | Path, items: int | None = None) -> list[dict[str, Any]]:
    """The split's first `items` rows (all when None)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return rows[:items] if items is not None else rows


def lmeval_template() -> str:
    return (resources.files("servesweep") / "data" / TASKS_DIR / LMEVAL_TEMPLATE).read_text()
