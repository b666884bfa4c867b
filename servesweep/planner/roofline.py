"""Roofline prediction: latency, throughput and cost of serving a model, from spec-sheet peaks.

For one accelerator, GPU count (tensor parallel), batch size, weight dtype and input/output lengths:

- **Prefill** FLOPs = 2 x active_params x input x batch, plus attention 2 x layers x input^2 x q_dim x batch
  (QK^T and AV, halved by the causal mask); bytes = weights read once + KV written. Time = the larger of
  FLOPs / (gpus x peak x flops_efficiency) and bytes-per-GPU / (bandwidth x bandwidth_efficiency). Long
  prompts are FLOPs-bound; a short prompt at batch 1 is bound by reading the weights.
- **Decode step** at the mean context c = input + output / 2: bytes = weights / gpus (MoE: only the experts
  the batch routes to) + batch x KV bytes per token per GPU x c; FLOPs = 2 x active_params x batch +
  4 x layers x c x q_dim x batch. Step time = max(bytes / bandwidth, FLOPs / peak), each at its efficiency.
- **TTFT** = prefill time: the batch is prefilled together and queueing is ignored (closed loop, the
  batch's requests in step). **TPOT** = decode step time. **E2E** = TTFT + (output - 1) x TPOT: the first
  token comes out of the prefill pass, the way TPOT is measured (see lake/schema.py).
- **Throughput** = batch x output / E2E (closed loop: each slot finishes a request per E2E).

Efficiencies of 1.0 give the roofline itself, a lower bound on time; ``calibrate`` fits them from measured
points. Tensor-parallel communication and CPU-side scheduling overheads are not modelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import servesweep
from servesweep.catalog import GB, AcceleratorType
from servesweep.lake.schema import STATS
from servesweep.planner.memory import (
    MemoryPolicy,
    check_fit,
    kv_bytes_per_token,
    normalize_dtype,
    weight_bytes,
)
from servesweep.planner.models import ModelArch

# Weight dtype each spec quantization loads; "none" keeps the model's dtype.
QUANTIZATION_WEIGHT_DTYPE = {"fp8": "fp8", "int8": "int8", "awq": "int4", "gptq": "int4"}
Bound = Literal["compute", "memory"]


class Efficiency(BaseModel):
    """Achieved fractions of the spec-sheet peaks (1.0 = the roofline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flops_efficiency: float = Field(1.0, gt=0, description="Fraction of peak FLOPs (governs prefill).")
    bandwidth_efficiency: float = Field(1.0, gt=0, description="Fraction of HBM bandwidth (governs decode).")


@dataclass(frozen=True)
class RooflineTerms:
    """The four roofline times (seconds) at efficiency 1; a prediction is their max per phase."""

    prefill_compute_s: float
    prefill_memory_s: float
    decode_compute_s: float
    decode_memory_s: float

    def prefill_s(self, efficiency: Efficiency) -> float:
        return max(
            self.prefill_compute_s / efficiency.flops_efficiency,
            self.prefill_memory_s / efficiency.bandwidth_efficiency,
        )

    def decode_step_s(self, efficiency: Efficiency) -> float:
        return max(
            self.decode_compute_s / efficiency.flops_efficiency,
            self.decode_memory_s / efficiency.bandwidth_efficiency,
        )


class Prediction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accelerator: str
    gpus: int
    machine_type: str | None
    weight_dtype: str
    compute_dtype: str
    kv_dtype: str
    batch_size: int
    input_tokens: int
    output_tokens: int
    efficiency: Efficiency
    prefill_s: float
    decode_step_s: float
    prefill_bound: Bound
    decode_bound: Bound
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    request_throughput: float
    input_token_throughput: float
    output_token_throughput: float
    total_token_throughput: float
    fits: bool
    fit_reason: str
    max_sequences: int
    cost_per_hour: float | None
    usd_per_million_output_tokens: float | None


def weight_dtype_for(quantization: str, model_dtype: str) -> str:
    """Weight dtype a spec's quantization loads (awq/gptq are 4-bit); 'none' keeps the model dtype."""
    return QUANTIZATION_WEIGHT_DTYPE.get(quantization) or normalize_dtype(model_dtype)


def compute_dtype_for(weight_dtype: str, activation_dtype: str, accelerator: AcceleratorType) -> str:
    """fp8/int8 weights run fp8/int8 matmuls where the GPU has them; 4-bit and fallbacks compute in activations."""
    weights = normalize_dtype(weight_dtype)
    if (weights == "fp8" and accelerator.fp8_tflops) or (weights == "int8" and accelerator.int8_tops):
        return weights
    return "fp32" if weights == "fp32" else normalize_dtype(activation_dtype)


def weights_touched_bytes(model: ModelArch, weight_dtype: str, tokens: int) -> float:
    """Weight bytes a pass over `tokens` tokens reads: all of a dense model; for an MoE, the shared part
    plus the experts expected to be routed to (uniform routing: 1 - (1 - k/E)^tokens of them)."""
    total = weight_bytes(model.parameters, weight_dtype)
    if not model.is_moe:
        return total
    experts = weight_bytes(model.expert_parameters, weight_dtype)
    touched = 1 - (1 - model.experts_per_token / model.num_experts) ** tokens
    return total - experts + experts * touched


def roofline_terms(
    model: ModelArch,
    accelerator: AcceleratorType,
    gpus: int,
    batch_size: int,
    input_tokens: int,
    output_tokens: int,
    weight_dtype: str = "bf16",
    activation_dtype: str = "bf16",
    kv_dtype: str | None = None,
) -> RooflineTerms:
    """Roofline times at efficiency 1 (see the module docstring for the formulas)."""
    if min(gpus, batch_size, input_tokens, output_tokens) < 1:
        raise ValueError("gpus, batch_size, input_tokens and output_tokens must be >= 1")
    peak = gpus * accelerator.peak_tflops(compute_dtype_for(weight_dtype, activation_dtype, accelerator)) * 1e12
    bandwidth = accelerator.hbm_bandwidth_gbps * GB  # per GPU; each GPU reads its own shard in parallel
    kv_token = kv_bytes_per_token(model, kv_dtype or activation_dtype, gpus)
    layers, q_dim, active = model.num_hidden_layers, model.q_dim, model.active_params

    prefill_flops = batch_size * (2 * active * input_tokens + 2 * layers * input_tokens**2 * q_dim)
    prefill_bytes = (
        weights_touched_bytes(model, weight_dtype, batch_size * input_tokens) / gpus
        + batch_size * input_tokens * kv_token
    )
    context = input_tokens + output_tokens / 2
    decode_flops = batch_size * (2 * active + 4 * layers * context * q_dim)
    decode_bytes = weights_touched_bytes(model, weight_dtype, batch_size) / gpus + batch_size * kv_token * context
    return RooflineTerms(
        prefill_compute_s=prefill_flops / peak,
        prefill_memory_s=prefill_bytes / bandwidth,
        decode_compute_s=decode_flops / peak,
        decode_memory_s=decode_bytes / bandwidth,
    )


def predict(
    model: ModelArch,
    accelerator: AcceleratorType,
    gpus: int,
    batch_size: int,
    input_tokens: int,
    output_tokens: int,
    weight_dtype: str = "bf16",
    *,
    activation_dtype: str = "bf16",
    kv_dtype: str | None = None,
    efficiency: Efficiency | None = None,
    policy: MemoryPolicy | None = None,
) -> Prediction:
    """Predicted TTFT, TPOT, throughput and $/M output tokens of one closed-loop point."""
    efficiency = efficiency or Efficiency()
    kv_dtype = normalize_dtype(kv_dtype or activation_dtype)
    terms = roofline_terms(
        model, accelerator, gpus, batch_size, input_tokens, output_tokens, weight_dtype, activation_dtype, kv_dtype
    )
    prefill_s, step_s = terms.prefill_s(efficiency), terms.decode_step_s(efficiency)
    e2e_s = prefill_s + (output_tokens - 1) * step_s
    fit = check_fit(model, accelerator, gpus, weight_dtype, input_tokens + output_tokens, kv_dtype, policy)
    output_throughput = batch_size * output_tokens / e2e_s
    return Prediction(
        accelerator=accelerator.name,
        gpus=gpus,
        machine_type=fit.machine_type,
        weight_dtype=normalize_dtype(weight_dtype),
        compute_dtype=compute_dtype_for(weight_dtype, activation_dtype, accelerator),
        kv_dtype=kv_dtype,
        batch_size=batch_size,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        efficiency=efficiency,
        prefill_s=prefill_s,
        decode_step_s=step_s,
        prefill_bound=_bound(terms.prefill_compute_s / efficiency.flops_efficiency, prefill_s),
        decode_bound=_bound(terms.decode_compute_s / efficiency.flops_efficiency, step_s),
        ttft_ms=prefill_s * 1e3,
        tpot_ms=step_s * 1e3,
        e2e_ms=e2e_s * 1e3,
        request_throughput=batch_size / e2e_s,
        input_token_throughput=batch_size * input_tokens / e2e_s,
        output_token_throughput=output_throughput,
        total_token_throughput=batch_size * (input_tokens + output_tokens) / e2e_s,
        fits=fit.fits and batch_size <= fit.max_sequences,
        fit_reason=_batch_fit_reason(fit.reason, fit.fits, batch_size, fit.max_sequences),
        max_sequences=fit.max_sequences if fit.fits else 0,
        cost_per_hour=fit.cost_per_hour,
        usd_per_million_output_tokens=_usd_per_million(fit.cost_per_hour, output_throughput),
    )


def _bound(compute_s: float, total_s: float) -> Bound:
    return "compute" if compute_s >= total_s else "memory"


def _batch_fit_reason(reason: str, fits: bool, batch_size: int, max_sequences: int) -> str:
    if not fits:
        return reason
    if batch_size > max_sequences:
        return f"batch {batch_size} > {max_sequences} sequences the KV cache holds"
    return "fits"


def _usd_per_million(cost_per_hour: float | None, output_token_throughput: float) -> float | None:
    if cost_per_hour is None or output_token_throughput <= 0:
        return None
    return cost_per_hour / (output_token_throughput * 3600) * 1e6


def predict_sweep(
    model: ModelArch,
    accelerator: AcceleratorType,
    gpus: int,
    batch_sizes: Iterable[int],
    input_tokens: int,
    output_tokens: int,
    weight_dtype: str = "bf16",
    **options: Any,
) -> list[Prediction]:
    """`predict` over batch sizes; options as for `predict`."""
    return [
        predict(model, accelerator, gpus, batch, input_tokens, output_tokens, weight_dtype, **options)
        for batch in batch_sizes
    ]


# --- predicted rows for the lake ------------------------------------------------------------------------


def prediction_rows(
    predictions: Sequence[Prediction],
    *,
    run_id: str,
    model_name: str,
    model_parameters: int,
    model_dtype: str,
    quantization: str,
    server_kind: str | None = None,
    model_preset: str | None = None,
    run_name: str | None = None,
) -> list[dict[str, Any]]:
    """`points` rows (source='predicted') that ``servesweep.lake.store.to_table('points', rows)`` accepts.

    Points that do not fit in memory get status 'failed' with the reason, and no latencies, like a
    measured point whose server could not start.
    """
    shared = {
        "run_id": run_id,
        "run_name": run_name,
        "source": "predicted",
        "model_name": model_name,
        "model_preset": model_preset,
        "model_parameters": model_parameters,
        "model_dtype": model_dtype,
        "quantization": quantization,
        "server_kind": server_kind,
        "sweep_mode": "predicted",
        "load_kind": "closed",
        "servesweep_version": servesweep.__version__,
    }
    return [{**shared, **_prediction_columns(p)} for p in predictions]


def _prediction_columns(p: Prediction) -> dict[str, Any]:
    deployment_id = f"predicted-{p.accelerator}-x{p.gpus}-{p.weight_dtype}"
    columns: dict[str, Any] = {
        "point_id": f"{deployment_id}-b{p.batch_size}-i{p.input_tokens}-o{p.output_tokens}",
        "deployment_id": deployment_id,
        "status": "ok" if p.fits else "failed",
        "failure_reason": None if p.fits else f"predicted: {p.fit_reason}",
        "accelerator": p.accelerator,
        "accelerator_count": p.gpus,
        "batch_size": p.batch_size,
        "concurrency": p.batch_size,
        "input_tokens": p.input_tokens,
        "output_tokens": p.output_tokens,
        "num_requests": p.batch_size,
        "num_errors": 0 if p.fits else p.batch_size,
    }
    metrics = _predicted_metrics(p)
    # A failed point has no latencies; keep the keys so every row has the same columns.
    columns.update(metrics if p.fits else dict.fromkeys(metrics))
    return columns


def _predicted_metrics(p: Prediction) -> dict[str, float]:
    metrics = {
        "duration_s": p.e2e_ms / 1e3,
        "request_throughput": p.request_throughput,
        "input_token_throughput": p.input_token_throughput,
        "output_token_throughput": p.output_token_throughput,
        "total_token_throughput": p.total_token_throughput,
    }
    # A prediction has no spread: every statistic of a latency is the predicted value.
    for metric, value in (("ttft", p.ttft_ms), ("tpot", p.tpot_ms), ("itl", p.tpot_ms), ("e2e", p.e2e_ms)):
        metrics.update({f"{metric}_{stat}_ms": value for stat in STATS})
    return metrics
