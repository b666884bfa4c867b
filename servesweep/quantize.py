"""The quantize step's work: one variant of a source checkpoint, cached under what decides its bytes.

- 'none', and server methods (vLLM `--quantization fp8`): the source as is (the server quantizes at load time).
- A pre-quantized checkpoint (`quantize.pretrained`): passed through as is.
- Checkpoint methods on 'dummy' weights: the source as is (the load-model step wrote the layout into config.json).
- Checkpoint methods on real weights (random or trained): post-training quantization with llm-compressor into
  a compressed-tensors checkpoint, run in llm-compressor's own venv (servesweep/llmc_worker.py says why).

The cache key is (source digest, method, parameters, tool version); the cache is a local directory or gs://.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from servesweep.quantization import is_checkpoint_method
from servesweep.spec import BenchmarkSpec

RESULT_FILE = "servesweep-quantize.json"
WORKER = Path(__file__).with_name("llmc_worker.py")
_CHECKPOINT_SUFFIXES = (".safetensors", ".json")


class QuantizeError(RuntimeError):
    """The quantize step could not make the variant; one line saying why."""


class QuantizeResult(BaseModel):
    """What the quantize step made (the lake's `quantized` row)."""

    method: str
    path: str
    how: str  # "as-is", "server", "pretrained", "dummy-layout" or "llmcompressor"
    tool: str = ""
    tool_version: str = ""
    cache_key: str = ""
    cached: bool = False
    weight_bytes: int = 0
    quantize_seconds: float = 0.0
    parameters: dict[str, Any] = {}


def read_result(model_dir: str | Path) -> QuantizeResult | None:
    """The quantize step's result in the checkpoint it made (None for a checkpoint no quantize step made)."""
    path = Path(model_dir) / RESULT_FILE
    return QuantizeResult.model_validate_json(path.read_text()) if path.exists() else None


def runs_columns(method: str, result: QuantizeResult | None) -> dict[str, Any]:
    """The runs table's quantize columns: the variant always, how it was made when the step's result is known."""
    if result is None:
        return {"quantization": method}
    return {"quantization": result.method, "quantize_how": result.how, "quantize_tool": result.tool or None,
            "quantize_tool_version": result.tool_version or None, "quantize_cache_key": result.cache_key or None,
            "quantize_cached": result.cached, "quantize_seconds": result.quantize_seconds,
            "weight_bytes": result.weight_bytes}


def weight_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def source_digest(path: str | Path) -> str:
    """sha256 over the checkpoint's weights and configs (names and bytes), in name order."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).iterdir()):
        if file.is_file() and file.suffix in _CHECKPOINT_SUFFIXES and not file.name.startswith("servesweep-"):
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def quantize_parameters(spec: BenchmarkSpec) -> dict[str, Any]:
    """The parameters that decide a quantized checkpoint's bytes (part of the cache key)."""
    q = spec.quantize
    params: dict[str, Any] = {"calibration_samples": q.calibration_samples, "max_seq_length": q.max_seq_length}
    if spec.quantization == "w8a8-int8":
        params["smoothing_strength"] = q.smoothing_strength
    if spec.quantization == "w4a16":
        params["algorithm"] = q.w4a16_algorithm
    if spec.quantization == "w8a8-fp8":
        params = {}  # dynamic activations, per-channel weights: no calibration
    return params


def cache_key(source: str, method: str, parameters: dict[str, Any], tool_version: str) -> str:
    blob = json.dumps({"source": source, "method": method, "parameters": parameters, "tool": tool_version},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def quantize_python() -> Path:
    """The interpreter of llm-compressor's venv: SERVESWEEP_QUANTIZE_PYTHON, else .venv-quantize beside this
    checkout, else this interpreter (when llm-compressor is installed here)."""
    if given := os.environ.get("SERVESWEEP_QUANTIZE_PYTHON"):
        return Path(given)
    beside = Path(__file__).resolve().parent.parent / ".venv-quantize" / "bin" / "python"
    return beside if beside.exists() else Path(sys.executable)


def tool_version(python: Path) -> str:
    """llm-compressor's version in `python`'s environment; QuantizeError naming the fix when it is missing."""
    code = "import importlib.metadata as m; print(m.version('llmcompressor'))"
    try:
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, check=False)
    except OSError as error:
        raise QuantizeError(f"cannot run {python}: {error}") from None
    if done.returncode != 0:
        raise QuantizeError(f"quantizing needs llm-compressor (the [quantize] extra, in its own venv): run "
                            f"`make quantize-venv` or set SERVESWEEP_QUANTIZE_PYTHON (not found in {python})")
    return done.stdout.strip()


class ArtifactCache:
    """Quantized checkpoints by key: a local directory, or gs://bucket/prefix (through pyarrow's GCS)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri or os.environ.get("SERVESWEEP_QUANT_CACHE", "") or str(
            Path.home() / ".cache" / "servesweep" / "quantized")

    def _remote(self) -> Any:
        from servesweep.lake.uri import filesystem, parse_lake_uri

        location = parse_lake_uri(self.uri)
        return filesystem(location), location.root

    def fetch(self, key: str, into: Path) -> bool:
        """Copy the artifact `key` into `into`; False when the cache has none (a complete one has RESULT_FILE)."""
        if not self.uri.startswith("gs://"):
            local = Path(self.uri) / key
            if not (local / RESULT_FILE).exists():
                return False
            shutil.copytree(local, into, dirs_exist_ok=True)
            return True
        import pyarrow.fs as pafs

        fs, root = self._remote()
        if fs.get_file_info(f"{root}/{key}/{RESULT_FILE}").type == pafs.FileType.NotFound:
            return False
        into.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(f"{root}/{key}", str(into), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        return True

    def store(self, key: str, source: Path) -> None:
        """Publish `source` as `key`; RESULT_FILE goes last, so a reader never sees half an artifact."""
        if not self.uri.startswith("gs://"):
            staging = Path(self.uri) / f".{key}.tmp-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging)
            final = Path(self.uri) / key
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            return
        import pyarrow.fs as pafs

        fs, root = self._remote()
        local = pafs.LocalFileSystem()
        for file in sorted(source.iterdir(), key=lambda f: f.name == RESULT_FILE):
            pafs.copy_files(str(file), f"{root}/{key}/{file.name}", source_filesystem=local, destination_filesystem=fs)


def calibration_texts(spec: BenchmarkSpec, source: Path) -> list[str]:
    """The calibration set: the trained task's training examples (that model's workload), else the workload's
    own prompts (the load generator's, at the first workload's input length)."""
    n = spec.quantize.calibration_samples
    if spec.model.weights == "trained":
        from servesweep.synthetic_task import train_examples

        return [e.text for e in train_examples(spec.model.training.digits, n, spec.model.seed + 1)]
    from servesweep.loadgen.datagen import PromptFactory

    factory = PromptFactory(source, seed=spec.model.seed)
    length = min(spec.workloads[0].input_tokens, spec.quantize.max_seq_length)
    return [factory.make(length) for _ in range(n)]


def _copy_checkpoint(source: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.is_file():
            shutil.copy2(file, out / file.name)


def quantize(spec: BenchmarkSpec, source: str | Path, out: str | Path) -> QuantizeResult:
    """Make `spec.quantization`'s variant of the checkpoint in `source` into `out` (the checkpoint the servers
    load); the result is also written to `out/RESULT_FILE`."""
    src, dst = Path(source), Path(out)
    method = spec.quantization
    started = time.perf_counter()
    if spec.quantize.pretrained:
        pretrained = Path(spec.quantize.pretrained)
        if not (pretrained / "config.json").exists():
            raise QuantizeError(f"quantize.pretrained: no config.json in {pretrained}")
        _copy_checkpoint(pretrained, dst)
        result = QuantizeResult(method=method, path=str(dst.resolve()), how="pretrained")
    elif not is_checkpoint_method(method) or spec.model.weights == "dummy":
        _copy_checkpoint(src, dst)
        how = "as-is" if method == "none" else ("dummy-layout" if is_checkpoint_method(method) else "server")
        result = QuantizeResult(method=method, path=str(dst.resolve()), how=how)
    else:
        result = _ptq(spec, src, dst)
    result = result.model_copy(update={"weight_bytes": weight_bytes(dst)})
    if result.how != "llmcompressor":
        result = result.model_copy(update={"quantize_seconds": time.perf_counter() - started})
    for name in ("servesweep-model.json", "servesweep-training.json"):  # what later steps read from the checkpoint
        if (src / name).exists() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)
    (dst / RESULT_FILE).write_text(result.model_dump_json(indent=2))
    return result


def _ptq(spec: BenchmarkSpec, src: Path, dst: Path) -> QuantizeResult:
    python = quantize_python()
    version = tool_version(python)
    parameters = quantize_parameters(spec)
    key = cache_key(source_digest(src), spec.quantization, parameters, f"llmcompressor=={version}")
    cache = ArtifactCache(spec.quantize.cache_uri)
    dst.mkdir(parents=True, exist_ok=True)
    if cache.fetch(key, dst):
        stored = QuantizeResult.model_validate_json((dst / RESULT_FILE).read_text())
        return stored.model_copy(update={"path": str(dst.resolve()), "cached": True})
    request = {"source": str(src), "out": str(dst), "method": spec.quantization,
               "algorithm": spec.quantize.w4a16_algorithm, "smoothing_strength": spec.quantize.smoothing_strength,
               "max_seq_length": spec.quantize.max_seq_length, "calibration": calibration_texts(spec, src)}
    # -P: the worker's folder (servesweep/, whose secrets.py would shadow the standard library's) stays off sys.path
    done = subprocess.run([str(python), "-P", str(WORKER), json.dumps(request)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise QuantizeError(f"llm-compressor failed quantizing to {spec.quantization}: {tail}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    result = QuantizeResult(method=spec.quantization, path=str(dst.resolve()), how="llmcompressor",
                            tool=measured["tool"], tool_version=measured["tool_version"], cache_key=key,
                            quantize_seconds=float(measured["seconds"]), parameters=parameters,
                            weight_bytes=weight_bytes(dst))
    (dst / RESULT_FILE).write_text(result.model_dump_json(indent=2))
    cache.store(key, dst)
    return result
