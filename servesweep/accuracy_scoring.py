"""Score a served variant: perplexity and exact match over the held-out split, and its baseline comparison.

Perplexity comes from the server's prompt log-probabilities. vLLM's CPU build (0.32, probed with the trained
model) answers all three forms: `/v1/completions` with `echo: true, logprobs: 1, max_tokens: 0`, the same with
`max_tokens: 1`, and `prompt_logprobs: 0`; this uses the first, the OpenAI completions shape other servers
share: `choices[0].logprobs.token_logprobs` (null for the BOS token, which has no context). The answer's
tokens are those past the problem's (servesweep.heldout: `context_chars`), whose count comes from echoing the
problem alone: vLLM's `text_offset` counts characters of the decoded tokens, not of the prompt, so it cannot
say where the answer starts. The math is servesweep.accuracy's.

Exact match runs lm-evaluation-harness (`local-completions` against the endpoint's /v1/completions, text
requests, no tokenizer) on the project's task file, in a child process with the Hugging Face offline switches
set (servesweep.lmeval_worker says why a child).

The baseline is the same model's unquantized variant: the newest `accuracy` row in the lake with quantization
'none' and the same model, task, metric and item count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import yaml

from servesweep.accuracy import Interval, difference_interval, perplexity_interval, proportion_interval
from servesweep.extras import MissingExtra, require_installed
from servesweep.heldout import lmeval_template

LMEVAL_TIMEOUT_S = 1800.0
WORKER = Path(__file__).with_name("lmeval_worker.py")  # run as a file: it imports no servesweep module


class ScoringError(RuntimeError):
    """The endpoint or lm-eval could not score the split; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """Where to send scoring requests."""

    base_url: str
    model: str
    headers: dict[str, str]
    timeout_s: float = 120.0


@dataclass(frozen=True)
class Score:
    task: str
    metric: str
    higher_is_better: bool
    value: Interval
    items: int
    tokens: int | None
    tool: str
    tool_version: str


def _post(target: Target, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(target.base_url.rstrip("/") + "/v1/completions",
                                     data=json.dumps({"model": target.model, **body}).encode(),
                                     headers={"Content-Type": "application/json", **target.headers})
    try:
        with urllib.request.urlopen(request, timeout=target.timeout_s) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        raise ScoringError(f"{target.base_url}: HTTP {error.code}: {error.read()[:300].decode(errors='replace')}") \
            from None
    except (OSError, ValueError) as error:
        raise ScoringError(f"{target.base_url}: {error}") from None


def _echo(target: Target, prompt: str) -> list[float | None]:
    """The server's log-probability of every token of `prompt` (None for the first, BOS), echoed back."""
    answer = _post(target, {"prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 0, "temperature": 0})
    try:
        logprobs: list[float | None] = answer["choices"][0]["logprobs"]["token_logprobs"]
    except (KeyError, IndexError, TypeError):
        raise ScoringError(f"{target.base_url}: no prompt log-probabilities in the answer (echo + logprobs "
                           "unsupported?)") from None
    return logprobs


def answer_logprobs(target: Target, text: str, context_chars: int) -> list[float]:
    """Log-probabilities of the tokens of `text` after its first `context_chars` characters. The context's
    token count comes from echoing it alone: `text_offset` cannot say, as vLLM counts it over the decoded
    tokens (a word-level tokenizer's carry no spaces), not over the prompt's characters."""
    context = len(_echo(target, text[:context_chars]))
    full = _echo(target, text)
    if len(full) <= context:
        raise ScoringError(f"{target.base_url}: {text!r} has no tokens after its first {context_chars} characters")
    return [float(lp) for lp in full[context:] if lp is not None]


def score_perplexity(target: Target, rows: list[dict[str, Any]], task: str, concurrency: int, seed: int,
                     version: str) -> Score:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        texts = list(pool.map(lambda row: answer_logprobs(target, row["text"], row["context_chars"]), rows))
    tokens = sum(len(t) for t in texts)
    if not tokens:
        raise ScoringError(f"{target.base_url}: no answer tokens had a log-probability")
    return Score(task=task, metric="perplexity", higher_is_better=False,
                 value=perplexity_interval(texts, seed=seed), items=len(rows), tokens=tokens, tool="servesweep",
                 tool_version=version)


def write_lmeval_task(split: Path, digits: int, out_dir: Path) -> str:
    """The shipped lm-eval task, pointed at `split` and asking for `digits + 1` tokens, in `out_dir`; its name."""
    config = yaml.safe_load(lmeval_template())
    config["task"] = f"{config['task']}_{digits}"
    config["dataset_kwargs"]["data_files"] = {"test": str(split.resolve())}
    config["generation_kwargs"]["max_gen_toks"] = digits + 1
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{config['task']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return str(config["task"])


def offline_env(scratch: Path) -> dict[str, str]:
    """The child's environment: Hugging Face offline, its caches in `scratch` (nothing fetched, nothing shared)."""
    return {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(scratch / "hf"), "HF_DATASETS_CACHE": str(scratch / "hf" / "datasets"),
            "TOKENIZERS_PARALLELISM": "false"}


def score_exact_match(target: Target, split: Path, digits: int, items: int, concurrency: int, seed: int,
                      scratch: Path, timeout_s: float = LMEVAL_TIMEOUT_S) -> Score:
    try:
        require_installed("lm_eval", "accuracy", "the accuracy step's exact match")
    except MissingExtra as error:
        raise ScoringError(str(error)) from None
    task = write_lmeval_task(split, digits, scratch / "lmeval-tasks")
    request = {"task_dir": str(scratch / "lmeval-tasks"), "task": task, "base_url": target.base_url,
               "model": target.model, "headers": target.headers, "limit": items, "concurrency": concurrency,
               "seed": seed, "timeout_s": target.timeout_s}
    try:
        # -P: the script's folder (servesweep/, with its platform.py and secrets.py) must not shadow the stdlib.
        done = subprocess.run([sys.executable, "-P", str(WORKER), json.dumps(request)],
                              capture_output=True, text=True, timeout=timeout_s, env=offline_env(scratch),
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise ScoringError(f"lm-eval did not finish in {timeout_s:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ScoringError(f"lm-eval failed (exit {done.returncode}): {tail[0][:300]}")
    result = json.loads(lines[-1])
    scored = int(result["items"])
    correct = round(float(result["exact_match"]) * scored)
    return Score(task=task, metric="exact_match", higher_is_better=True, value=proportion_interval(correct, scored),
                 items=scored, tokens=None, tool="lm-eval", tool_version=str(result["version"]))


# --- the baseline --------------------------------------------------------------------------------------------

def find_baseline(lake_uri: str, model: str, task: str, metric: str, items: int) -> dict[str, Any] | None:
    """The newest accuracy row of `model`'s unquantized variant for the same task, metric and item count."""
    from servesweep.lake.store import read_table
    from servesweep.lake.uri import LakeError

    try:
        table = read_table(lake_uri, "accuracy")
    except LakeError:
        return None  # no lake yet: no baseline
    if not len(table):
        return None
    same = pc.and_(pc.and_(pc.equal(table["quantization"], "none"), pc.equal(table["model"], model)),
                   pc.and_(pc.and_(pc.equal(table["task"], task), pc.equal(table["metric"], metric)),
                           pc.equal(table["items"], items)))
    rows = table.filter(same).to_pylist()
    return max(rows, key=lambda r: r["measured_at"]) if rows else None


def comparison(score: Score, baseline: dict[str, Any], threshold: float) -> dict[str, Any]:
    """The baseline columns of a row: delta (value - baseline) with its interval, the threshold and the verdict
    (exact match: the drop in share at most `threshold`; perplexity: the relative increase at most it)."""
    base = Interval(value=baseline["value"], low=_or(baseline["ci_low"], baseline["value"]),
                    high=_or(baseline["ci_high"], baseline["value"]))
    delta = difference_interval(score.value, base)
    if score.metric == "exact_match":
        passed = -delta.value <= threshold
    else:
        passed = score.value.value / base.value - 1 <= threshold
    return {"baseline_run_id": baseline["run_id"], "baseline_value": base.value, "delta": delta.value,
            "delta_low": delta.low, "delta_high": delta.high, "threshold": threshold, "passed": passed}


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
