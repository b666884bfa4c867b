"""The shipped held-out split and lm-eval task are what the generator and the template say."""

from __future__ import annotations

import json

import yaml

from servesweep.accuracy_scoring import write_lmeval_task
from servesweep.heldout import read_split, shipped_split, split_file, split_lines, split_size
from servesweep.synthetic_task import is_heldout


def test_the_shipped_split_is_the_generators_output():
    shipped = shipped_split(2)
    assert shipped is not None
    assert read_split(shipped) == split_lines(2)


def test_every_shipped_problem_is_held_out_and_correct():
    rows = read_split(shipped_split(2))
    assert len(rows) == split_size(2) == 256
    assert len({row["prompt"] for row in rows}) == len(rows)
    for row in rows:
        a, b = (int("".join(side.split())) for side in row["prompt"].removesuffix(" =").split(" + "))
        assert is_heldout(a, b, 2)
        assert row["answer"] == " ".join(reversed(str(a + b).zfill(3)))
        assert row["text"] == f"{row['prompt']} {row['answer']}"
        assert row["text"][row["context_chars"]:] == " " + row["answer"]


def test_a_digit_count_without_a_shipped_split_is_generated(tmp_path):
    assert shipped_split(3) is None
    path = split_file(3, tmp_path)
    assert path.parent == tmp_path and read_split(path, 5) == split_lines(3)[:5]
    assert split_size(1) == len(split_lines(1)) < 10  # 1-digit operands: only a handful of pairs are held out


def test_the_lmeval_task_points_at_the_split_and_asks_for_the_answers_length(tmp_path):
    split = split_file(3, tmp_path / "data")
    name = write_lmeval_task(split, 3, tmp_path / "tasks")
    config = yaml.safe_load((tmp_path / "tasks" / f"{name}.yaml").read_text())
    assert name == "servesweep_addition_3"
    assert config["dataset_kwargs"]["data_files"] == {"test": str(split.resolve())}
    assert config["generation_kwargs"]["max_gen_toks"] == 4 and config["generation_kwargs"]["do_sample"] is False
    assert config["output_type"] == "generate_until" and config["metric_list"][0]["metric"] == "exact_match"
    assert json.loads(split.read_text().splitlines()[0])["answer"].count(" ") == 3
