"""Quantization methods a spec may ask for, and where each is applied.

Two kinds: the server quantizes online at load time (vLLM `--quantization fp8`), or the checkpoint itself is
quantized (compressed-tensors, the format llm-compressor writes and vLLM loads with no flag). A checkpoint
method on `model.weights: dummy` needs no quantized weights at all: the load-model step writes the
compressed-tensors `quantization_config` into config.json and vLLM's `--load-format dummy` allocates the
quantized layout (int8 or packed int4 weights, their scales) and runs its real kernels over it, which is what
a throughput measurement needs. It imports no servesweep package, so the spec can name its methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from servesweep.extras import require

ServerMethod = Literal["fp8", "int8", "awq", "gptq"]
CheckpointMethod = Literal["w8a8-fp8", "w8a8-int8", "w4a16"]
Quantization = Literal["none", ServerMethod, CheckpointMethod]


@dataclass(frozen=True)
class CheckpointScheme:
    """A compressed-tensors scheme: its preset name, storage format and the weight dtype the planner charges."""

    preset: str
    format: str
    weight_dtype: str


CHECKPOINT_SCHEMES: dict[str, CheckpointScheme] = {
    # FP8 weights per channel, activations per token at run time (llm-compressor's FP8_DYNAMIC)
    "w8a8-fp8": CheckpointScheme("FP8_DYNAMIC", "float-quantized", "fp8"),
    # INT8 weights per channel, activations per token at run time (SmoothQuant + GPTQ's output layout)
    "w8a8-int8": CheckpointScheme("W8A8", "int-quantized", "int8"),
    # INT4 weights in groups of 128, packed 8 to an int32; bf16 activations (GPTQ/AWQ's output layout)
    "w4a16": CheckpointScheme("W4A16", "pack-quantized", "int4"),
}
SERVER_WEIGHT_DTYPE: dict[str, str] = {"fp8": "fp8", "int8": "int8", "awq": "int4", "gptq": "int4"}


def is_checkpoint_method(quantization: str) -> bool:
    return quantization in CHECKPOINT_SCHEMES


def server_flag(quantization: str) -> str | None:
    """The value of vLLM's `--quantization`, or None when the checkpoint's config says it (or nothing does)."""
    return quantization if quantization in SERVER_WEIGHT_DTYPE else None


def quantized_weight_dtype(quantization: str) -> str | None:
    """Weight dtype the method stores; None for 'none' (the model's own dtype)."""
    scheme = CHECKPOINT_SCHEMES.get(quantization)
    return scheme.weight_dtype if scheme else SERVER_WEIGHT_DTYPE.get(quantization)


def compressed_tensors_config(quantization: str) -> dict[str, Any]:
    """config.json's `quantization_config` for a checkpoint method, built by compressed-tensors itself (the
    version vLLM loads with), every Linear layer but the LM head quantized as llm-compressor's presets do."""
    ct = require("compressed_tensors.quantization", "local", "writing a quantized checkpoint's config")
    scheme = CHECKPOINT_SCHEMES[quantization]
    config = ct.QuantizationConfig(
        config_groups={"group_0": ct.preset_name_to_scheme(scheme.preset, ["Linear"])},
        format=scheme.format, ignore=["lm_head"], quantization_status=ct.QuantizationStatus.COMPRESSED,
    )
    dumped: dict[str, Any] = config.model_dump()
    return dumped
