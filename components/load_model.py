"""Load-model step: the checkpoint the spec's servers load, made available by the spec's platform.

Locally the output directory is the checkpoint (random weights generated there); on GKE the weights live
in GCS or on the hub and the output directory keeps the files later steps read (config, tokenizer).
Either way it also gets MODEL_INFO_FILE, what collect-metrics records in every point.
"""

from __future__ import annotations

from pathlib import Path

from servesweep.platform import Platform, platform_for
from servesweep.platform.types import ModelInfo
from servesweep.spec import BenchmarkSpec

MODEL_INFO_FILE = "servesweep-model.json"


def prepare_model(spec: BenchmarkSpec, out_dir: str | Path, platform: Platform | None = None) -> ModelInfo:
    """The checkpoint the spec's servers load; out_dir gets what later steps read (tokenizer, config, info)."""
    info = (platform or platform_for(spec)).fetch_checkpoint(spec, Path(out_dir))
    (Path(out_dir) / MODEL_INFO_FILE).write_text(info.model_dump_json())
    return info


def read_model_info(model_dir: str | Path) -> ModelInfo:
    return ModelInfo.model_validate_json((Path(model_dir) / MODEL_INFO_FILE).read_text())
