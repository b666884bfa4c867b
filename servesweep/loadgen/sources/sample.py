"""The bundled sample dataset, generated here (no third-party text, no licence to track).

`servesweep/data/sample-sharegpt.jsonl`: 200 ShareGPT-format conversations of 1-4 turns, questions and
answers of varied lengths assembled from a small vocabulary written for this project, seeded. Regenerate
with `python -m servesweep.loadgen.sources.sample`; a test checks the committed file is what this writes.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import servesweep

NAME = "sample-sharegpt.jsonl"
TOPICS = ["a batch job", "the cache", "a small garden", "the train schedule", "a bread recipe", "the new printer",
          "a weekend trip", "the budget report", "a chess opening", "the weather station", "a bike repair",
          "the school play", "a database index", "the river walk", "a piano lesson", "the tax form"]
ASKS = ["How do I start with {t}?", "What is the best way to plan {t}?", "Can you explain {t} in simple words?",
        "Why does {t} take so long?", "What should I check first about {t}?", "Give me three tips for {t}.",
        "Is there a cheaper way to handle {t}?", "What goes wrong most often with {t}?"]
DETAILS = ["I have about an hour each day.", "My friend tried this last year and gave up.",
           "The last attempt failed after two weeks.", "I would like to keep it simple.",
           "We are a team of four people.", "Money is tight this month.", "I am new to this.",
           "It needs to be done before the end of the month.", "The old notes are lost."]
ANSWERS = ["Start small and write down each step as you go.", "Check the simple things first, then the rare ones.",
           "Set a fixed time every day and keep it short.", "Ask someone who has done it before to look at it.",
           "Split the work into parts that each take less than an hour.", "Keep a list of what worked and what "
           "did not.", "Measure before you change anything, then measure again.", "Do not buy new tools until the "
           "old ones really fail.", "Read the short guide first and skip the long one.", "Plan for delays and "
           "leave a day free at the end."]
FOLLOW_UPS = ["What if that does not work?", "Could you say more about the second point?", "How long will it take?",
              "Is there anything I should avoid?", "Can you make that shorter?"]


def conversation(rng: random.Random, index: int) -> dict[str, Any]:
    topic = rng.choice(TOPICS)
    question = " ".join([rng.choice(ASKS).format(t=topic), *rng.sample(DETAILS, rng.randint(0, 4))])
    turns = []
    for turn in range(rng.randint(1, 4)):
        asked = question if turn == 0 else rng.choice(FOLLOW_UPS)
        answer = " ".join(rng.choice(ANSWERS) for _ in range(rng.randint(1, 8)))
        turns += [{"from": "human", "value": asked}, {"from": "gpt", "value": answer}]
    return {"id": f"sample-{index:03d}", "conversations": turns}


def lines(count: int = 200, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    return [json.dumps(conversation(rng, i), sort_keys=True) for i in range(count)]


def bundled_path() -> Path:
    return Path(servesweep.__file__).resolve().parent / "data" / NAME


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else bundled_path()
    path.write_text("\n".join(lines()) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
