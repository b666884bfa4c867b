"""Model catalog: the architecture facts the planner needs, for popular open models or any HF config.json.

Shipped data: ``servesweep/data/models.yaml``. ``from_config_json`` reads a local checkpoint's config.json
(no download) and estimates the parameter count from the architecture, or takes it from the safetensors
index next to it when there is one.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servesweep.spec import MODEL_PRESETS, ModelShape

# Architectures whose MLP is up/down only (GELU); everything else is assumed gated (SwiGLU/GeGLU: 3 matrices).
_UNGATED_MODEL_TYPES = {"falcon", "bloom", "gpt2", "gpt_neox", "gptj", "opt", "mpt", "gpt_bigcode", "phi"}
_SAFETENSORS_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


class ModelError(ValueError):
    """A model name or config.json the planner cannot use; the message says which field."""


class ModelArch(BaseModel):
    """Architecture of a decoder-only transformer, as far as memory and FLOPs are concerned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1)
    hf_id: str = ""
    parameters: int = Field(..., gt=0)
    active_parameters: int | None = Field(None, gt=0, description="MoE: parameters used per token.")
    num_hidden_layers: int = Field(..., gt=0)
    hidden_size: int = Field(..., gt=0)
    intermediate_size: int = Field(..., gt=0, description="MLP width of one expert.")
    num_attention_heads: int = Field(..., gt=0)
    num_key_value_heads: int = Field(..., gt=0)
    head_dim: int = Field(..., gt=0)
    vocab_size: int = Field(..., gt=0)
    max_position_embeddings: int = Field(..., gt=0)
    num_experts: int = Field(1, ge=1)
    experts_per_token: int = Field(1, ge=1)
    tie_word_embeddings: bool = False
    gated_mlp: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ModelArch:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token exceeds num_experts")
        if self.expert_parameters >= self.parameters:
            raise ValueError("parameters is smaller than the experts' MLPs alone")
        if self.active_parameters is not None and self.active_parameters > self.parameters:
            raise ValueError("active_parameters exceeds parameters")
        return self

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def q_dim(self) -> int:
        """Width of all query heads together (attention FLOPs scale with it)."""
        return self.num_attention_heads * self.head_dim

    @property
    def expert_mlp_parameters(self) -> int:
        """Parameters of one expert's MLP in one layer."""
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    @property
    def expert_parameters(self) -> int:
        """Parameters in expert MLPs over all layers (0 for a dense model: its MLP is shared)."""
        return self.num_experts * self.num_hidden_layers * self.expert_mlp_parameters if self.is_moe else 0

    @property
    def active_params(self) -> int:
        """Parameters each token passes through: all of them, less the unrouted experts of an MoE."""
        if self.active_parameters is not None:
            return self.active_parameters
        unused = (self.num_experts - self.experts_per_token) * self.num_hidden_layers * self.expert_mlp_parameters
        return self.parameters - unused if self.is_moe else self.parameters


def estimate_parameters(
    *,
    num_hidden_layers: int,
    hidden_size: int,
    intermediate_size: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    head_dim: int,
    vocab_size: int,
    tie_word_embeddings: bool = False,
    gated_mlp: bool = True,
    num_experts: int = 1,
    experts_per_token: int = 1,
) -> tuple[int, int]:
    """(total, active) parameters from the architecture: exact for Llama/Mistral/Mixtral, biases ignored."""
    attention = 2 * hidden_size * num_attention_heads * head_dim + 2 * hidden_size * num_key_value_heads * head_dim
    mlp = (3 if gated_mlp else 2) * hidden_size * intermediate_size
    router = hidden_size * num_experts if num_experts > 1 else 0
    norms = 2 * hidden_size
    embeddings = vocab_size * hidden_size * (1 if tie_word_embeddings else 2)
    shared = embeddings + hidden_size + num_hidden_layers * (attention + router + norms)  # + final norm
    total = shared + num_hidden_layers * num_experts * mlp
    active = shared + num_hidden_layers * min(experts_per_token, num_experts) * mlp
    return total, active


# --- the shipped catalog --------------------------------------------------------------------------------


def models_path() -> Path:
    return Path(str(resources.files("servesweep").joinpath("data/models.yaml")))


@cache
def _shipped_models() -> tuple[tuple[str, ModelArch], ...]:
    data = yaml.safe_load(models_path().read_text())
    return tuple((key, ModelArch(name=key, **entry)) for key, entry in data["models"].items())


def load_models() -> dict[str, ModelArch]:
    """The shipped model catalog, by name."""
    return dict(_shipped_models())


def get_model(name: str) -> ModelArch:
    """A model by catalog name or HF id (case-insensitive), a spec preset, or a path to a config.json/dir."""
    wanted = name.lower()
    for key, model in _shipped_models():
        if wanted in (key, model.hf_id.lower()):
            return model
    if name in MODEL_PRESETS:
        return from_shape(name, MODEL_PRESETS[name])
    if Path(name).exists():
        return from_config_json(name)
    known = ", ".join(key for key, _ in _shipped_models())
    raise ModelError(f"unknown model {name!r}; known: {known} (or a spec preset, or a config.json path)")


def from_shape(name: str, shape: ModelShape) -> ModelArch:
    """A spec preset's Llama shape as a planner model (parameters estimated, exact for Llama)."""
    head_dim = shape.hidden_size // shape.num_attention_heads
    arch: dict[str, Any] = {
        "num_hidden_layers": shape.num_hidden_layers, "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size, "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads, "head_dim": head_dim, "vocab_size": shape.vocab_size,
        "tie_word_embeddings": shape.tie_word_embeddings,
    }
    total, _ = estimate_parameters(**arch)
    return ModelArch(name=name, parameters=total, max_position_embeddings=shape.max_position_embeddings, **arch)


# --- config.json ----------------------------------------------------------------------------------------


def from_config_json(path: str | Path, name: str | None = None) -> ModelArch:
    """Read a Hugging Face config.json (or a checkpoint directory holding one) into a ModelArch.

    Understands Llama-style names plus Falcon/Bloom/GPT-2 aliases, ``head_dim``, ``num_key_value_heads``
    (or Falcon's ``multi_query``/``num_kv_heads``) and Mixtral's ``num_local_experts``/``num_experts_per_tok``.
    """
    config_path = Path(path)
    if config_path.is_dir():
        config_path = config_path / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except OSError as error:
        raise ModelError(f"cannot read {config_path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ModelError(f"{config_path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_path}: expected a JSON object")
    arch = _arch_fields(config, config_path)
    total, active = estimate_parameters(**arch)
    total = _parameters_from_index(config_path.parent, config) or total
    moe = arch["num_experts"] > 1
    try:
        return ModelArch(
            name=name or config.get("_name_or_path") or config_path.parent.name,
            parameters=total,
            active_parameters=active if moe else None,
            max_position_embeddings=_first(config, ("max_position_embeddings", "n_positions", "seq_length"), 2048),
            **arch,
        )
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ModelError(f"{config_path}: {problems}") from None


def _arch_fields(config: dict[str, Any], source: Path) -> dict[str, Any]:
    def required(*names: str) -> int:
        value = _first(config, names, None)
        if not isinstance(value, int) or value <= 0:
            raise ModelError(f"{source}: missing or invalid {' / '.join(names)}")
        return value

    hidden = required("hidden_size", "n_embd", "d_model")
    heads = required("num_attention_heads", "n_head", "num_heads")
    experts = _first(config, ("num_local_experts", "num_experts"), 1) or 1
    return {
        "num_hidden_layers": required("num_hidden_layers", "n_layer", "num_layers"),
        "hidden_size": hidden,
        "intermediate_size": _first(config, ("intermediate_size", "ffn_hidden_size", "n_inner"), None) or 4 * hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": _kv_heads(config, heads),
        "head_dim": config.get("head_dim") or hidden // heads,
        "vocab_size": required("vocab_size"),
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "gated_mlp": config.get("model_type") not in _UNGATED_MODEL_TYPES,
        "num_experts": experts,
        "experts_per_token": (config.get("num_experts_per_tok") or 1) if experts > 1 else 1,
    }


def _kv_heads(config: dict[str, Any], heads: int) -> int:
    if config.get("num_key_value_heads"):
        return int(config["num_key_value_heads"])
    if config.get("new_decoder_architecture") and config.get("num_kv_heads"):
        return int(config["num_kv_heads"])  # Falcon 40B/180B
    if config.get("multi_query"):
        return 1  # Falcon 7B
    return heads


def _parameters_from_index(directory: Path, config: dict[str, Any]) -> int | None:
    """Exact count from model.safetensors.index.json's total_size when the checkpoint's dtype is known."""
    index = directory / "model.safetensors.index.json"
    bytes_per_param = _SAFETENSORS_DTYPE_BYTES.get(str(config.get("torch_dtype")))
    if not index.is_file() or not bytes_per_param:
        return None
    try:
        total_size = json.loads(index.read_text())["metadata"]["total_size"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    return int(total_size) // bytes_per_param if isinstance(total_size, int | float) and total_size > 0 else None


def _first(config: dict[str, Any], names: tuple[str, ...], default: Any) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return default
