"""Checkpoints on GKE: the servers read them from GCS or the hub; the pipeline keeps their small files.

- `GCSModel(random_weights=True)`: generate the spec's random-weight checkpoint here and upload it,
  unless the folder already holds one generated from the same model spec (a marker file says so;
  it is written last, so a half-finished upload is never taken for a checkpoint).
- `GCSModel(random_weights=False)` / `HuggingFaceModel`: the checkpoint exists; fetch its config and
  tokenizer only.

Either way the output directory gets config.json and tokenizer.json, which the sweep step needs to
build prompts, never the weights (each sweep pod would otherwise download them).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from servesweep.gke_spec import GCSModel, HuggingFaceModel
from servesweep.platform.checkpoint import load_model
from servesweep.platform.types import ModelInfo
from servesweep.spec import BenchmarkSpec, ModelShape, ModelSpec

MARKER = "servesweep-model.json"
REQUIRED_FILES = ("config.json", "tokenizer.json")
OPTIONAL_FILES = ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                  "model.safetensors.index.json")


def fetch_checkpoint(spec: BenchmarkSpec, out_dir: str | Path) -> ModelInfo:
    """The spec's checkpoint where its servers read it (gke.model), its small files in out_dir."""
    if spec.gke is None:
        raise ValueError("spec has no gke section")
    source = spec.gke.model
    if isinstance(source, HuggingFaceModel):
        return fetch_hub_checkpoint(spec.model, source, out_dir)
    if source.random_weights:
        return publish_random_checkpoint(spec.model, source, out_dir)
    return fetch_gcs_checkpoint(spec.model, source, out_dir)


def gcs_uri(source: GCSModel) -> str:
    return f"gs://{source.bucket}/{source.path}".rstrip("/")


def _key(source: GCSModel, name: str) -> str:
    return f"{source.path}/{name}" if source.path else name


def _storage_client() -> Any:  # a google.cloud.storage.Client
    from google.cloud import storage

    return storage.Client()  # honours STORAGE_EMULATOR_HOST (tests, local dev)


def publish_random_checkpoint(model: ModelSpec, source: GCSModel, out_dir: str | Path,
                              client: Any = None) -> ModelInfo:
    """Make sure the folder holds `model`'s random-weight checkpoint; its small files land in out_dir."""
    started = time.perf_counter()
    bucket = (client or _storage_client()).bucket(source.bucket)
    marker = bucket.blob(_key(source, MARKER))
    weights = _weights_identity(model)
    if marker.exists():
        published = json.loads(marker.download_as_text())
        if published.get("weights") == weights:
            _download(bucket, source, out_dir)
            info = ModelInfo.model_validate(published["info"])
            return info.model_copy(update={"served_name": model.name, "seconds": time.perf_counter() - started})
    with tempfile.TemporaryDirectory(prefix="servesweep-checkpoint-") as scratch:
        info = load_model(model, scratch)
        files = sorted(p for p in Path(scratch).iterdir() if p.is_file())
        for path in files:
            bucket.blob(_key(source, path.name)).upload_from_filename(str(path))
        _keep_small_files(Path(scratch), Path(out_dir))
    info = info.model_copy(update={"path": gcs_uri(source), "seconds": time.perf_counter() - started})
    marker.upload_from_string(json.dumps({"weights": weights, "info": info.model_dump(mode="json")}),
                              content_type="application/json")
    return info


def _weights_identity(model: ModelSpec) -> dict[str, Any]:
    """What determines the generated files (the served name does not)."""
    return model.model_dump(mode="json", exclude={"name"}) | {"shape": model.resolved_shape().model_dump()}


def fetch_gcs_checkpoint(model: ModelSpec, source: GCSModel, out_dir: str | Path, client: Any = None) -> ModelInfo:
    started = time.perf_counter()
    client = client or _storage_client()
    bucket = client.bucket(source.bucket)
    _download(bucket, source, out_dir)
    size = sum(blob.size or 0 for blob in client.list_blobs(source.bucket, prefix=_key(source, "")))
    return describe_checkpoint(model, gcs_uri(source), out_dir, size, time.perf_counter() - started)


def fetch_hub_checkpoint(model: ModelSpec, source: HuggingFaceModel, out_dir: str | Path) -> ModelInfo:
    """Config and tokenizer from the hub (token: HF_TOKEN from the Secret the step mounts as env)."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        try:
            hf_hub_download(source.repo_id, name, revision=source.revision, local_dir=out)
        except EntryNotFoundError:
            if name in REQUIRED_FILES:
                raise FileNotFoundError(f"{source.repo_id} has no {name}; the sweep needs it") from None
    repo = HfApi().model_info(source.repo_id, revision=source.revision, files_metadata=True)
    size = sum(f.size or 0 for f in repo.siblings or [] if f.rfilename.endswith(".safetensors"))
    return describe_checkpoint(model, source.repo_id, out, size, time.perf_counter() - started)


def describe_checkpoint(model: ModelSpec, location: str, out_dir: str | Path, size: int, seconds: float) -> ModelInfo:
    """ModelInfo of an existing checkpoint from its config.json and tokenizer.json in out_dir."""
    from tokenizers import Tokenizer

    from servesweep.planner.models import from_config_json

    out = Path(out_dir)
    arch = from_config_json(out, name=model.name)
    config = json.loads((out / "config.json").read_text())
    shape = ModelShape(
        hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers, num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads, vocab_size=arch.vocab_size,
        max_position_embeddings=arch.max_position_embeddings, tie_word_embeddings=arch.tie_word_embeddings,
    )
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    return ModelInfo(
        path=location, served_name=model.name, parameters=arch.parameters,
        dtype=str(config.get("torch_dtype") or model.dtype), bytes_on_disk=size, seconds=seconds,
        vocab_size=arch.vocab_size, tokenizer_vocab_size=tokenizer.get_vocab_size(), shape=shape,
    )


def _download(bucket: Any, source: GCSModel, out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        blob = bucket.blob(_key(source, name))
        if blob.exists():
            blob.download_to_filename(str(out / name))
        elif name in REQUIRED_FILES:
            raise FileNotFoundError(f"{gcs_uri(source)}/{name} is missing; the sweep needs it")


def _keep_small_files(checkpoint: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        if (checkpoint / name).exists():
            shutil.copy2(checkpoint / name, out_dir / name)
