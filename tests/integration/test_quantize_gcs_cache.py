"""The quantize step's gs:// artifact cache against the real GCS emulator, with llm-compressor for real (the
quantize venv, `make quantize-venv`): the first run quantizes and publishes the artifact to gs://, a second run
into a fresh directory takes it from there (the worker is not run again: a failing one stands in) with the same
bytes, and its result says so. Nothing mocked but the second worker; if llm-compressor is missing, it fails."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

import servesweep.quantize as q
from servesweep.platform.checkpoint import load_model
from servesweep.spec import parse_spec

CACHE = "gs://lake/quant-cache"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A random-weight checkpoint of the trained model's shape (the shape llm-compressor's groups divide)."""
    return Path(load_model(_spec().model, tmp_path_factory.mktemp("source")).path)


def _spec():
    return parse_spec({"model": {"preset": "tiny-trained"}, "quantization": "w4a16", "server": {"max_model_len": 256},
                       "workloads": [{"input_tokens": 32, "output_tokens": 8}],
                       "quantize": {"cache_uri": CACHE, "calibration_samples": 8, "max_seq_length": 32}})


def test_a_second_run_reuses_the_artifact_from_gcs(gcs_emulator, source, tmp_path, monkeypatch):
    first = q.quantize(_spec(), source, tmp_path / "first")
    assert (first.how, first.cached, first.tool) == ("llmcompressor", False, "llmcompressor")
    assert 0 < first.weight_bytes < q.weight_bytes(source)  # int4 weights are smaller than the bf16 source

    fs, root = q.ArtifactCache(CACHE)._remote()
    published = {info.base_name for info in fs.get_file_info(pafs.FileSelector(f"{root}/{first.cache_key}"))}
    assert q.RESULT_FILE in published and any(name.endswith(".safetensors") for name in published)

    failing = tmp_path / "failing_worker.py"
    failing.write_text("import sys; sys.exit('the worker ran: the cache was not used')\n")
    monkeypatch.setattr(q, "WORKER", failing)
    second = q.quantize(_spec(), source, tmp_path / "second")
    assert (second.cached, second.cache_key, second.tool_version) == (True, first.cache_key, first.tool_version)
    assert second.weight_bytes == first.weight_bytes and second.quantize_seconds == first.quantize_seconds
    for weights in (tmp_path / "first").glob("*.safetensors"):
        assert (tmp_path / "second" / weights.name).read_bytes() == weights.read_bytes()
    assert q.read_result(tmp_path / "second") == second
