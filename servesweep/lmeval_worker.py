"""Exact match through lm-evaluation-harness, run as a child process by servesweep.accuracy_scoring.

A child, not a call in the step's own process: lm-eval configures logging, imports datasets and torch, and
reads its offline switches (HF_DATASETS_OFFLINE, HF_HUB_OFFLINE) when it is imported, so a fresh interpreter
with those set is the one way to be sure nothing is downloaded, and a hang or crash in it is bounded by the
parent's timeout instead of taking the step down. It is run as a file and imports no servesweep module, so
it works whatever the child's sys.path. It prints one JSON line, the result, last.

    python lmeval_worker.py '{"task_dir": DIR, "task": NAME, "base_url": URL, "model": NAME,
                                          "headers": {...}, "limit": N, "concurrency": 8, "seed": 0}'
"""

from __future__ import annotations

import json
import sys
from typing import Any


def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    model_args: dict[str, Any] = {
        "base_url": request["base_url"].rstrip("/") + "/v1/completions",
        "model": request["model"],
        "tokenizer_backend": None,  # generate_until sends text: no tokenizer needed, none fetched
        "tokenized_requests": False,
        "num_concurrent": request["concurrency"],
        "max_retries": 3,
        "timeout": request.get("timeout_s", 120),
    }
    if request.get("headers"):
        model_args["header"] = request["headers"]
    results = lm_eval.simple_evaluate(
        model="local-completions", model_args=model_args, tasks=[request["task"]],
        task_manager=TaskManager(include_path=request["task_dir"], include_defaults=False),
        limit=request.get("limit"), log_samples=False, bootstrap_iters=0, random_seed=request["seed"],
        numpy_random_seed=request["seed"], torch_random_seed=request["seed"], fewshot_random_seed=request["seed"],
    )
    if results is None:
        raise RuntimeError("lm-eval returned no results")
    scores = results["results"][request["task"]]
    samples = results["n-samples"][request["task"]]["effective"]
    return {"exact_match": float(scores["exact_match,strip"]), "items": int(samples),
            "version": getattr(lm_eval, "__version__", "")}


if __name__ == "__main__":
    print(json.dumps(evaluate(json.loads(sys.argv[1]))))
