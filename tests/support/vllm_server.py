"""A real vLLM server process for the tests that start their own (the shared one, the trained model's)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from servesweep.platform.local import server_env
from servesweep.spec import BenchmarkSpec


@contextlib.contextmanager
def running_vllm(command: list[str], spec: BenchmarkSpec, log: Path, model: str,
                 token: str | None = None, prompt: str = "ready") -> Iterator[str]:
    """A vLLM server process of `command` (its port in the command), ready for completions of `model` (probed
    with `prompt`: a word its tokenizer knows); yields its base URL and stops it after. A server that exits or
    never answers fails the test loudly, with its log."""
    port = command[command.index("--port") + 1]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=server_env(spec),
                                   stdin=subprocess.DEVNULL, process_group=0)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base_url, model, log, token, prompt)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen, base_url: str, model: str, log: Path, token: str | None, prompt: str,
                timeout_s: float = 600) -> None:
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": 1}).encode()
    deadline = time.monotonic() + timeout_s
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM exited with {process.returncode}: {log.read_text()[-3000:]}")
        request = urllib.request.Request(base_url + "/v1/completions", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"vLLM not ready in {timeout_s} s: {log.read_text()[-3000:]}")
