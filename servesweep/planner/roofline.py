"""Serving-time prediction: latency, throughput and cost of one closed-loop point, from spec-sheet peaks
and, once calibrated, a server's own overheads.

For one accelerator, GPU count (tensor parallel), batch size, weight dtype and input/output lengths:

- **Prefill** FLOPs = 2 x active_params x input x batch, plus attention 2 x layers x input^2 x q_dim x batch
  (QK^T and AV, halved by the causal mask); bytes = weights read once per engine step + KV written. A
  phase's time is the larger of FLOPs / (gpus x peak x flops_efficiency) and bytes-per-GPU / (bandwidth x
  bandwidth_efficiency), plus the fixed time of an engine step (the time a real server spends that no
  roofline sees): `step_overhead_ms` per step (scheduling, sampling), `layer_overhead_us` per layer per
  step (the kernel launches and small kernels of each layer, so a deeper model has a higher floor), and in
  a decode step `sequence_overhead_us` per sequence of the batch (per-request bookkeeping: scheduling,
  detokenising, streaming each new token).
- **Chunked prefill.** A server with `prefill_chunk_tokens` prefills at most that many prompt tokens per
  step, so the batch's prompts take ceil(batch x input / chunk) steps, each reading the weights again.
  Requests that arrive together come out of the prefill in turn: request i's first token follows the step
  holding its last prompt token. Without a chunk size the whole batch is one step (the pure roofline).
- **Decode step** at the mean context c = input + output / 2: bytes = weights / gpus (MoE: only the experts
  the batch routes to) + batch x KV bytes per token per GPU x c; FLOPs = 2 x active_params x batch +
  4 x layers x c x q_dim x batch; time = step overhead + the larger of the two.
- **A closed-loop round.** The sweep's points send `batch` requests of one shape at once and, with fixed
  lengths, the rounds stay in step. Request i's TTFT = `request_overhead_ms` + i x `request_admission_ms`
  (the server's front end takes a burst's requests one at a time) + the prefill steps up to its prompt.
  Every request finishes at the end of the round, the last request's TTFT + (output - 1) decode steps,
  so a request prefilled early decodes while later prompts are prefilled, and its TPOT
  (E2E - TTFT) / (output - 1) carries that wait. **TTFT** and **TPOT** are the
  means over the round's requests; **E2E** = the round's length; **throughput** = batch x output / E2E.

- **Tensor-parallel communication** (gpus = tp > 1). Megatron-style tensor parallelism all-reduces each
  layer's activations twice (after attention's output projection and after the MLP's down projection),
  so a step over T tokens does 2 x layers all-reduces of T x hidden_size x activation bytes. A ring
  all-reduce of S bytes moves 2 (tp - 1) / tp x S in and out of each GPU at once, so each costs
  2 (tp - 1) / tp x S / link + latency, with the link's per-GPU one-way bandwidth and the fixed all-reduce
  latency from the catalog (`interconnect_gbps`, `allreduce_latency_us`). The time is added to every
  prefill step (T = that step's prompt tokens) and every decode step (T = batch), after the max of compute
  and memory: vLLM's all-reduces wait for the matmul before them and block the next, so nothing overlaps.
  Efficiencies do not scale it (the link is not HBM). With gpus = 1 the term is exactly 0, so a single-GPU
  prediction is the same as without it.

An `Efficiency()` (1.0, no overheads, no chunking) is the roofline itself, a lower bound on time;
``calibrate`` fits the factors per (server kind, accelerator[, weight dtype]) from measured points, and
the catalog keeps the fitted ones (`servesweep/data/calibrations.yaml`). Pipeline parallelism is not
modelled: a placement is one tensor-parallel server on one machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import servesweep
from servesweep.catalog import GB, AcceleratorType
from servesweep.lake.schema import STATS
from servesweep.planner.memory import (
    MemoryPolicy,
    bytes_per_param,
    check_fit,
    kv_bytes_per_token,
    normalize_dtype,
    weight_bytes,
)
from servesweep.planner.models import ModelArch
from servesweep.quantization import quantized_weight_dtype

ALLREDUCES_PER_LAYER = 2  # attention's output projection and the MLP's down projection each end in one
Bound = Literal["compute", "memory"]


class Efficiency(BaseModel):
    """How a server falls short of the roofline: achieved fractions of the peaks, its fixed costs, its
    prefill chunk (the defaults are the roofline itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flops_efficiency: float = Field(1.0, gt=0, description="Fraction of peak FLOPs (governs prefill).")
    bandwidth_efficiency: float = Field(1.0, gt=0, description="Fraction of HBM bandwidth (governs decode).")
    step_overhead_ms: float = Field(0.0, ge=0, description="Fixed time of every engine step, ms.")
    layer_overhead_us: float = Field(0.0, ge=0, description="Fixed time of every engine step per model layer "
                                     "(per-layer kernel launches and latency), us.")
    sequence_overhead_us: float = Field(0.0, ge=0, description="Time of a decode step per sequence in the "
                                        "batch (scheduling, detokenising, streaming), us.")
    request_overhead_ms: float = Field(0.0, ge=0, description="Fixed time before a request's prefill (HTTP, "
                                       "first schedule), ms; part of TTFT.")
    request_admission_ms: float = Field(0.0, ge=0, description="Serial front-end time per request (parsing, "
                                        "tokenisation): the i-th request of a burst waits i of these, ms.")
    prefill_chunk_tokens: int | None = Field(None, ge=1, description="Prompt tokens per engine step (chunked "
                                             "prefill, vLLM's max_num_batched_tokens); None: one step per batch.")


@dataclass(frozen=True)
class RooflineTerms:
    """The roofline times (seconds) at efficiency 1 of one point; a prediction combines them per phase.

    Prefill is split into what scales with prompt tokens (compute, KV writes) and the weight read that
    every prefill step repeats, so a chunked prefill can be costed per request of the round.
    """

    prefill_compute_s: float  # the whole batch's prompts
    prefill_memory_s: float  # weights once + the whole batch's KV writes
    decode_compute_s: float
    decode_memory_s: float
    batch_size: int = 1
    input_tokens: int = 1
    output_tokens: int = 1
    prefill_weights_s: float = 0.0  # the weight read inside prefill_memory_s
    prefill_comm_s: float = 0.0  # tensor parallel: link time of the whole batch's prompt all-reduces
    decode_comm_s: float = 0.0  # tensor parallel: link time of one decode step's all-reduces
    comm_latency_s: float = 0.0  # tensor parallel: fixed all-reduce latency of one engine step
    layers: int = 0  # the model's layers: the per-layer part of every step's fixed time

    def step_fixed_s(self, efficiency: Efficiency) -> float:
        """Fixed time of any engine step: the per-step and the per-layer overheads."""
        return efficiency.step_overhead_ms / 1e3 + self.layers * efficiency.layer_overhead_us / 1e6

    def prefill_s(self, efficiency: Efficiency) -> float:
        """The whole batch's prefill: the last request's TTFT without the request overhead."""
        return self._prefill_until(self.batch_size, efficiency)

    def decode_step_s(self, efficiency: Efficiency) -> float:
        sequences = self.batch_size * efficiency.sequence_overhead_us / 1e6
        return self.step_fixed_s(efficiency) + sequences + self.decode_comm_s + self.comm_latency_s + max(
            self.decode_compute_s / efficiency.flops_efficiency,
            self.decode_memory_s / efficiency.bandwidth_efficiency,
        )

    def _prefill_until(self, request: int, efficiency: Efficiency) -> float:
        """Prefill time until request `request` (1-based) of the round has its first token."""
        chunk = efficiency.prefill_chunk_tokens
        # Unchunked, the whole batch is one step: every request's first token comes out of it together.
        share = 1.0 if chunk is None else request / self.batch_size
        steps = 1 if chunk is None else math.ceil(request * self.input_tokens / chunk)
        kv_writes_s = self.prefill_memory_s - self.prefill_weights_s
        memory = steps * self.prefill_weights_s + share * kv_writes_s
        compute = share * self.prefill_compute_s
        fixed = steps * self.step_fixed_s(efficiency) + request * efficiency.request_admission_ms / 1e3
        comm = share * self.prefill_comm_s + steps * self.comm_latency_s
        return fixed + comm + max(compute / efficiency.flops_efficiency,
                                        memory / efficiency.bandwidth_efficiency)

    def round(self, efficiency: Efficiency) -> tuple[float, float, float]:
        """(mean TTFT, mean TPOT, E2E) in seconds of one closed-loop round (module docstring)."""
        if efficiency.prefill_chunk_tokens is None and not efficiency.request_admission_ms:
            ttfts = [self.prefill_s(efficiency)]  # one step: every request's first token together
        else:
            ttfts = [self._prefill_until(i, efficiency) for i in range(1, self.batch_size + 1)]
        last = ttfts[-1]
        step = self.decode_step_s(efficiency)
        waits = sum(last - t for t in ttfts) / len(ttfts)  # decode alongside later prompts' prefill
        request = efficiency.request_overhead_ms / 1e3
        tpot = step + (waits / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0)
        return request + sum(ttfts) / len(ttfts), tpot, request + last + (self.output_tokens - 1) * step


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
    decode_comm_ms: float = 0.0  # the tensor-parallel all-reduces inside decode_step_s (link + latency)
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
    return quantized_weight_dtype(quantization) or normalize_dtype(model_dtype)


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


@dataclass(frozen=True)
class AllReduceCost:
    """Tensor-parallel all-reduces of one engine step: bytes each GPU moves per token, and fixed seconds."""

    bytes_per_token: float  # per GPU, each way, over every layer's all-reduces
    link_bytes_per_s: float
    per_step_s: float  # the all-reduces' fixed latency

    @property
    def per_token_s(self) -> float:
        return self.bytes_per_token / self.link_bytes_per_s


def allreduce_cost(model: ModelArch, accelerator: AcceleratorType, gpus: int, activation_dtype: str) -> AllReduceCost:
    """The module docstring's communication term; zero on one GPU.

    An accelerator without a link has no machine with several GPUs (the catalog requires one on those), so
    its multi-GPU placement fails the fit anyway; it is charged no link time rather than refused, so a plan of
    such a spec still reports why it cannot run.
    """
    if gpus == 1 or accelerator.interconnect_gbps is None or accelerator.allreduce_latency_us is None:
        return AllReduceCost(0.0, 1.0, 0.0)
    allreduces = ALLREDUCES_PER_LAYER * model.num_hidden_layers
    ring_share = 2 * (gpus - 1) / gpus
    return AllReduceCost(
        bytes_per_token=allreduces * ring_share * model.hidden_size * bytes_per_param(activation_dtype),
        link_bytes_per_s=accelerator.interconnect_gbps * GB,
        per_step_s=allreduces * accelerator.allreduce_latency_us / 1e6,
    )


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
    comm = allreduce_cost(model, accelerator, gpus, activation_dtype)
    return RooflineTerms(
        prefill_compute_s=prefill_flops / peak,
        prefill_memory_s=prefill_bytes / bandwidth,
        decode_compute_s=decode_flops / peak,
        decode_memory_s=decode_bytes / bandwidth,
        batch_size=batch_size,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        prefill_weights_s=weights_touched_bytes(model, weight_dtype, batch_size * input_tokens) / gpus / bandwidth,
        prefill_comm_s=batch_size * input_tokens * comm.per_token_s,
        decode_comm_s=batch_size * comm.per_token_s,
        comm_latency_s=comm.per_step_s,
        layers=layers,
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
    ttft_s, tpot_s, e2e_s = terms.round(efficiency)
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
        decode_comm_ms=(terms.decode_comm_s + terms.comm_latency_s) * 1e3,
        prefill_bound=_bound(terms.prefill_compute_s / efficiency.flops_efficiency,
                             terms.prefill_memory_s / efficiency.bandwidth_efficiency),
        decode_bound=_bound(terms.decode_compute_s / efficiency.flops_efficiency,
                            terms.decode_memory_s / efficiency.bandwidth_efficiency),
        ttft_ms=ttft_s * 1e3,
        tpot_ms=tpot_s * 1e3,
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


def _bound(compute_s: float, memory_s: float) -> Bound:
    return "compute" if compute_s >= memory_s else "memory"


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
