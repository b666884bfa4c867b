"""Quantize step: the variant of the load-model step's checkpoint that the spec's servers load.

bf16 (quantization 'none') and server methods pass the source through; checkpoint methods on real weights are
quantized with llm-compressor (cached); a pre-quantized checkpoint is passed through. The output directory is
the checkpoint deploy-server and sweep read; its servesweep-quantize.json is what collect-metrics records.
"""

from __future__ import annotations

from pathlib import Path

from servesweep.quantize import QuantizeResult, quantize, read_result
from servesweep.spec import BenchmarkSpec


def quantize_model(spec: BenchmarkSpec, model_dir: str | Path, out_dir: str | Path) -> QuantizeResult:
    return quantize(spec, model_dir, out_dir)


def read_quantize_result(model_dir: str | Path) -> QuantizeResult | None:
    return read_result(model_dir)
