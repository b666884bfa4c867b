"""Shared fixtures: a tiny generated checkpoint and a real GCS emulator process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.gcs_emulator import EmulatorError, start_emulator
from servesweep.platform.checkpoint import load_model
from servesweep.platform.types import ModelInfo
from servesweep.spec import ModelSpec

# Subprocesses (KFP's local runner tasks, the CLI) import this checkout, not an installed copy of servesweep.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> ModelInfo:
    return load_model(ModelSpec(), tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """A real gcp-storage-emulator process with a bucket named `lake`; fails loudly if it cannot start."""
    log_path = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    log = log_path.open("wb")
    try:
        process, port = start_emulator(log)
    except EmulatorError as error:
        log.close()
        pytest.fail(f"{error}: {log_path.read_text()[-2000:]}")
    host = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    yield host
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    process.terminate()
    process.wait(timeout=10)
    log.close()
