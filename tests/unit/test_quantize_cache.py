"""The quantize step's cache: a second run with the same (source, method, parameters, tool version) reuses the
artifact; a change to any of them quantizes again. llm-compressor is replaced by a stand-in worker script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import servesweep.quantize as q
from servesweep.spec import parse_spec

FAKE_WORKER = """
import json, sys, pathlib
request = json.loads(sys.argv[1])
out = pathlib.Path(request["out"]); out.mkdir(parents=True, exist_ok=True)
(out / "model.safetensors").write_bytes(b"q" * 100)
(out / "config.json").write_text("{}")
calls = pathlib.Path(request["source"]) / "calls"
calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))
print(json.dumps({"tool": "llmcompressor", "tool_version": "9.9", "seconds": 1.5}))
"""


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    src = tmp_path / "source"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"w" * 400)
    (src / "config.json").write_text(json.dumps({"hidden_size": 8}))
    worker = tmp_path / "worker.py"
    worker.write_text(FAKE_WORKER)
    monkeypatch.setattr(q, "WORKER", worker)
    monkeypatch.setattr(q, "quantize_python", lambda: Path(sys.executable))
    monkeypatch.setattr(q, "tool_version", lambda python: "9.9")
    monkeypatch.setattr(q, "calibration_texts", lambda spec, src: ["a b c"])
    return src


def _spec(tmp_path: Path, method: str = "w4a16", **quantize: object):
    return parse_spec({"quantization": method, "quantize": {"cache_uri": str(tmp_path / "cache"), **quantize}})


def _calls(src: Path) -> int:
    return int((src / "calls").read_text())


def test_second_run_reuses_the_cached_artifact(tmp_path: Path, source: Path) -> None:
    first = q.quantize(_spec(tmp_path), source, tmp_path / "out1")
    second = q.quantize(_spec(tmp_path), source, tmp_path / "out2")
    assert (first.cached, second.cached) == (False, True)
    assert _calls(source) == 1
    assert first.cache_key == second.cache_key
    assert second.weight_bytes == 100 and second.tool_version == "9.9" and second.quantize_seconds == 1.5
    assert (tmp_path / "out2" / "model.safetensors").read_bytes() == b"q" * 100


def test_parameters_method_or_source_change_the_key(tmp_path: Path, source: Path) -> None:
    keys = {q.quantize(_spec(tmp_path), source, tmp_path / "a").cache_key,
            q.quantize(_spec(tmp_path, w4a16_algorithm="awq"), source, tmp_path / "b").cache_key,
            q.quantize(_spec(tmp_path, "w8a8-int8"), source, tmp_path / "c").cache_key}
    (source / "model.safetensors").write_bytes(b"v" * 400)
    keys.add(q.quantize(_spec(tmp_path), source, tmp_path / "d").cache_key)
    assert len(keys) == 4 and _calls(source.parent / "source") >= 1


def test_tool_version_is_in_the_key() -> None:
    assert q.cache_key("s", "w4a16", {}, "llmcompressor==0.14") != q.cache_key("s", "w4a16", {}, "llmcompressor==0.15")


def test_bf16_and_server_methods_pass_the_source_through(tmp_path: Path, source: Path) -> None:
    for method, how in (("none", "as-is"), ("fp8", "server")):
        result = q.quantize(_spec(tmp_path, method), source, tmp_path / method)
        assert result.how == how and result.weight_bytes == 400
    assert not (source / "calls").exists()
