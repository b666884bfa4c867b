"""The accuracy step against a real vLLM CPU server serving the trained addition model.

The model comes from the load-model step's cache (trained on first use: about a minute on 2 cores).
"""

from __future__ import annotations

import json
import math
import urllib.request

import pytest

from components.accuracy import score_accuracy
from components.write_lake import write_lake
from servesweep.accuracy_scoring import Target, answer_logprobs, score_exact_match, score_perplexity
from servesweep.heldout import read_split, shipped_split
from servesweep.platform.checkpoint import load_model
from servesweep.platform.local import free_port, vllm_command
from servesweep.platform.types import Endpoint
from servesweep.spec import BenchmarkSpec
from servesweep.sweep_plan import plan_deployments
from tests.support.vllm_server import running_vllm

SPEC = {"name": "acc", "model": {"name": "adder", "preset": "tiny-trained", "weights": "trained"},
        "server": {"kind": "vllm", "max_model_len": 256}, "sweep": {"batch_sizes": [1], "requests_per_point": 4}}


@pytest.fixture(scope="module")
def trained_server(tmp_path_factory):
    spec = BenchmarkSpec.model_validate(SPEC)
    model = load_model(spec.model, tmp_path_factory.mktemp("trained"))
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-trained") / "server.log"
    with running_vllm(vllm_command(spec, model.path, port, 8), spec, log, "adder", prompt="1") as base_url:
        yield Target(base_url, "adder", {})


def _greedy(target, prompt):
    body = json.dumps({"model": "adder", "prompt": prompt, "max_tokens": 3, "temperature": 0}).encode()
    request = urllib.request.Request(target.base_url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["choices"][0]["text"].strip()


def test_perplexity_is_the_one_computed_by_hand_from_the_servers_logprobs(trained_server):
    rows = read_split(shipped_split(2), 16)
    score = score_perplexity(trained_server, rows, "addition-2-heldout", concurrency=4, seed=0, version="test")
    nll = []
    for row in rows:  # the raw answer, its answer tokens picked by character offset by hand
        body = json.dumps({"model": "adder", "prompt": row["text"], "echo": True, "logprobs": 1,
                           "max_tokens": 0}).encode()
        request = urllib.request.Request(trained_server.base_url + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            logprobs = json.loads(response.read())["choices"][0]["logprobs"]
        answer = [lp for token, lp in zip(logprobs["tokens"], logprobs["token_logprobs"], strict=True)
                  if lp is not None][-3:]  # the sum's three digit tokens end the text
        assert logprobs["tokens"][-3:] == row["answer"].split()
        assert answer == answer_logprobs(trained_server, row["text"], row["context_chars"])
        nll += [-lp for lp in answer]
    assert score.tokens == 16 * 3 and score.items == 16
    assert score.value.value == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-12)
    assert score.value.low <= score.value.value <= score.value.high
    assert 1.0 <= score.value.value < 1.5  # the trained model is nearly sure of the answers it learned


def test_exact_match_through_lm_eval_equals_the_greedy_answers(trained_server, tmp_path):
    split = shipped_split(2)
    rows = read_split(split, 64)
    score = score_exact_match(trained_server, split, 2, 64, concurrency=4, seed=0, scratch=tmp_path)
    by_hand = sum(_greedy(trained_server, row["prompt"]) == row["answer"] for row in rows)
    assert score.tool == "lm-eval" and score.tool_version.startswith("0.4")
    assert score.items == 64
    assert round(score.value.value * 64) == by_hand
    assert score.value.value > 0.9  # the model learned the task (~1.0 in float32 at training time)


def test_the_step_writes_a_baseline_and_compares_a_variant_with_it(trained_server, tmp_path):
    lake = str(tmp_path / "lake")
    base = BenchmarkSpec.model_validate(SPEC | {"run_id": "base-1", "lake_uri": lake,
                                                "accuracy": {"items": 32}})
    deployment = plan_deployments(base)[0]
    endpoint = Endpoint(deployment_id=deployment.deployment_id, max_num_seqs=8, base_url=trained_server.base_url,
                        served_name="adder")
    rows = score_accuracy(base, endpoint, deployment)
    assert sorted(rows["metric"].to_pylist()) == ["exact_match", "perplexity"]
    assert rows["baseline_run_id"].null_count == 2 and rows["passed"].null_count == 2
    write_lake(lake, "base-1", {"accuracy": rows})
    # The same server labelled as a variant: the lookup finds base-1, the deltas are zero, both pass.
    variant = base.with_fields("test", run_id="var-1", quantization="w4a16")
    compared = {r["metric"]: r for r in score_accuracy(variant, endpoint, deployment).to_pylist()}
    for metric, row in compared.items():
        assert row["baseline_run_id"] == "base-1", metric
        assert row["delta"] == pytest.approx(0.0, abs=1e-9) and row["passed"] is True
        assert row["delta_low"] < 0 < row["delta_high"] or row["delta_low"] == row["delta_high"] == 0
    assert compared["exact_match"]["threshold"] == 0.02 and compared["perplexity"]["threshold"] == 0.05
