"""The zero-work OpenAI server (benchmarks/loadgen/zero_server.py) as the fast tests start it: a real process with
fixed time to first token and between tokens, its log in a pytest temporary folder, stopped when the fixture ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from benchmarks.loadgen.zero_server import ServerConfig, ServerProcess, start_subprocess


@contextmanager
def running_zero_server(tmp_path_factory: pytest.TempPathFactory, ttft_ms: float,
                        itl_ms: float) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("zero") / "server.npz"
    server = start_subprocess(ServerConfig(ttft_ms=ttft_ms, itl_ms=itl_ms), log)
    try:
        yield server
    finally:
        server.stop()
