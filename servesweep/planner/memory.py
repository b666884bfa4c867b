"""GPU memory: does a model fit, on how many GPUs, and how many sequences does the KV cache hold.

All sizes are decimal GB (1 GB = 1e9 bytes), the unit of the GKE guide's table (7B at bf16 = 14 GB) and
of GPU spec sheets (L4 = 24 GB). Rules, both from the guide and both configurable (`MemoryPolicy`):

- **Weights rule**: the weights on each GPU may use at most ``weight_fraction`` (80%) of its memory, so an
  L4 takes at most 24 x 0.8 = 19.2 GB of weights. The rest is KV-cache headroom; lower the fraction to
  0.65 to keep the guide's 35% for the KV cache on long-context or high-batch workloads.
- **KV budget**: what the server may allocate (``gpu_memory_utilization``, vLLM's 0.9 default) minus the
  weights. Activations and CUDA graphs are not modelled; they come out of the 10% vLLM leaves.

Tensor parallelism over ``tp`` GPUs splits weights evenly and KV heads across GPUs; when ``tp`` exceeds
the KV heads each GPU keeps one replica (vLLM's behaviour), so per-GPU KV stops shrinking.

**How many GPUs a model needs** (`minimum_parallelism`): the smallest tensor-parallel size (a power of two
dividing the attention heads, on one machine) that passes both rules; when even the biggest machine is too
small, pipeline stages across machines (vLLM's advice: tensor parallel = GPUs per node, pipeline parallel =
nodes), each stage holding an even share of the layers and their KV cache.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from servesweep.catalog import GB, AcceleratorType
from servesweep.planner.models import ModelArch

DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
_DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float8": "fp8"}
_FIT_TOLERANCE = 1e-12  # relative: a model exactly at the limit fits despite float rounding


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryPolicy(_Strict):
    weight_fraction: float = Field(0.8, gt=0, le=1, description="Max share of GPU memory for weights.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share the server allocates (vLLM).")


class Fit(_Strict):
    """Whether a model fits on `gpus` GPUs of one accelerator type, and with how much KV cache."""

    accelerator: str
    gpus: int
    machine_type: str | None
    fits: bool
    reason: str
    weight_dtype: str
    kv_dtype: str
    context_len: int
    weights_per_gpu_gb: float
    weight_limit_gb: float
    kv_budget_per_gpu_gb: float
    kv_per_sequence_per_gpu_gb: float
    max_sequences: int
    cost_per_hour: float | None


class Parallelism(_Strict):
    """The fewest GPUs that serve a model on one accelerator type: tensor parallel inside a machine, times
    pipeline stages across machines when one machine is not enough."""

    accelerator: str
    weight_dtype: str
    kv_dtype: str
    context_len: int
    tensor_parallel: int
    pipeline_parallel: int
    fits: bool
    reason: str

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    def describe(self) -> str:
        """'1', '2 (TP 2)', '16 (TP 8 x PP 2: 2 machines)' or why nothing fits."""
        if not self.fits:
            return self.reason
        if self.pipeline_parallel > 1:
            return (f"{self.gpus} (TP {self.tensor_parallel} x PP {self.pipeline_parallel}: "
                    f"{self.pipeline_parallel} machines)")
        return "1" if self.gpus == 1 else f"{self.gpus} (TP {self.tensor_parallel})"


def normalize_dtype(dtype: str) -> str:
    """'bfloat16' -> 'bf16' etc.; raises on dtypes the planner has no byte width for."""
    name = _DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    return name


def bytes_per_param(dtype: str) -> float:
    return DTYPE_BYTES[normalize_dtype(dtype)]


def weight_bytes(parameters: int, dtype: str) -> float:
    """Weights = parameters x bytes per parameter (quantization scales and zero points ignored)."""
    return parameters * bytes_per_param(dtype)


def weight_gb(parameters: int, dtype: str) -> float:
    return weight_bytes(parameters, dtype) / GB


def weight_limit_gb(accelerator: AcceleratorType, policy: MemoryPolicy | None = None) -> float:
    """Most weights one GPU may hold under the weights rule (L4: 24 GB x 0.8 = 19.2 GB)."""
    return accelerator.gpu_memory_gb * (policy or MemoryPolicy()).weight_fraction


def kv_heads_per_gpu(model: ModelArch, tensor_parallel: int = 1) -> int:
    return math.ceil(model.num_key_value_heads / tensor_parallel)


def kv_bytes_per_token(model: ModelArch, kv_dtype: str = "bf16", tensor_parallel: int = 1) -> float:
    """KV cache per token = 2 (K and V) x layers x KV heads x head_dim x bytes; per GPU when tensor_parallel > 1."""
    heads = kv_heads_per_gpu(model, tensor_parallel)
    return 2 * model.num_hidden_layers * heads * model.head_dim * bytes_per_param(kv_dtype)


def tensor_parallel_sizes(model: ModelArch, accelerator: AcceleratorType) -> list[int]:
    """GPU counts a tensor-parallel server can use: powers of two up to the biggest machine, dividing the heads."""
    sizes = [2**i for i in range(int(math.log2(accelerator.max_gpus)) + 1)]
    return [tp for tp in sizes if model.num_attention_heads % tp == 0]


def check_fit(
    model: ModelArch,
    accelerator: AcceleratorType,
    gpus: int,
    weight_dtype: str,
    context_len: int,
    kv_dtype: str = "bf16",
    policy: MemoryPolicy | None = None,
) -> Fit:
    """Fit of `model` on `gpus` GPUs: the weights rule, then at least one sequence of `context_len` in KV."""
    if context_len < 1 or gpus < 1:
        raise ValueError("context_len and gpus must be >= 1")
    policy = policy or MemoryPolicy()
    weights = weight_bytes(model.parameters, weight_dtype) / gpus
    limit = accelerator.gpu_memory_bytes * policy.weight_fraction
    kv_budget = max(accelerator.gpu_memory_bytes * policy.gpu_memory_utilization - weights, 0.0)
    per_sequence = kv_bytes_per_token(model, kv_dtype, gpus) * context_len
    sequences = math.floor(kv_budget / per_sequence * (1 + _FIT_TOLERANCE))
    machine = accelerator.machine_for(gpus)
    reason = _fit_reason(model, gpus, weights, limit, sequences, context_len, machine is not None)
    return Fit(
        accelerator=accelerator.name,
        gpus=gpus,
        machine_type=machine.machine_type if machine else None,
        fits=reason == "fits",
        reason=reason,
        weight_dtype=normalize_dtype(weight_dtype),
        kv_dtype=normalize_dtype(kv_dtype),
        context_len=context_len,
        weights_per_gpu_gb=weights / GB,
        weight_limit_gb=limit / GB,
        kv_budget_per_gpu_gb=kv_budget / GB,
        kv_per_sequence_per_gpu_gb=per_sequence / GB,
        max_sequences=sequences,
        cost_per_hour=accelerator.hourly_cost(gpus) if machine else None,
    )


def _fit_reason(
    model: ModelArch, gpus: int, weights: float, limit: float, sequences: int, context_len: int, has_machine: bool
) -> str:
    if not has_machine:
        return f"no machine type with {gpus} GPUs"
    if model.num_attention_heads % gpus:
        return f"{model.num_attention_heads} attention heads do not split over {gpus} GPUs"
    if weights > limit * (1 + _FIT_TOLERANCE):
        return f"weights {weights / GB:.1f} GB/GPU > {limit / GB:.1f} GB limit"
    if sequences < 1:
        return f"KV cache holds no {context_len}-token sequence"
    return "fits"


def minimum_parallelism(
    model: ModelArch,
    accelerator: AcceleratorType,
    weight_dtype: str,
    context_len: int,
    kv_dtype: str = "bf16",
    policy: MemoryPolicy | None = None,
) -> Parallelism:
    """The smallest tensor-parallel size that fits (module docstring); pipeline stages when no machine does."""
    fields: dict[str, Any] = {"accelerator": accelerator.name, "weight_dtype": normalize_dtype(weight_dtype),
              "kv_dtype": normalize_dtype(kv_dtype), "context_len": context_len}
    sizes = [tp for tp in tensor_parallel_sizes(model, accelerator) if accelerator.machine_for(tp)]
    for tp in sizes:
        if check_fit(model, accelerator, tp, weight_dtype, context_len, kv_dtype, policy).fits:
            reason = "fits one GPU" if tp == 1 else f"needs tensor parallelism: {tp} GPUs (TP {tp})"
            return Parallelism(tensor_parallel=tp, pipeline_parallel=1, fits=True, reason=reason, **fields)
    tp = sizes[-1]
    for stages in range(2, model.num_hidden_layers + 1):
        if _stage_fits(model, accelerator, tp, stages, weight_dtype, context_len, kv_dtype, policy or MemoryPolicy()):
            reason = (f"needs pipeline parallelism across {stages} machines: {tp * stages} GPUs "
                      f"(TP {tp} x PP {stages})")
            return Parallelism(tensor_parallel=tp, pipeline_parallel=stages, fits=True, reason=reason, **fields)
    return Parallelism(tensor_parallel=tp, pipeline_parallel=model.num_hidden_layers, fits=False,
                       reason="does not fit even with one layer per machine", **fields)


def _stage_fits(
    model: ModelArch, accelerator: AcceleratorType, tp: int, stages: int, weight_dtype: str, context_len: int,
    kv_dtype: str, policy: MemoryPolicy,
) -> bool:
    """One pipeline stage per machine: 1/stages of the weights and of the layers' KV cache on each of tp GPUs."""
    weights = weight_bytes(model.parameters, weight_dtype) / (tp * stages)
    layers = math.ceil(model.num_hidden_layers / stages)
    kv_per_sequence = kv_bytes_per_token(model, kv_dtype, tp) * layers / model.num_hidden_layers * context_len
    budget = accelerator.gpu_memory_bytes * policy.gpu_memory_utilization - weights
    limit = accelerator.gpu_memory_bytes * policy.weight_fraction
    return weights <= limit * (1 + _FIT_TOLERANCE) and budget >= kv_per_sequence


def max_concurrent_sequences(
    model: ModelArch,
    accelerator: AcceleratorType,
    gpus: int,
    weight_dtype: str,
    context_len: int,
    kv_dtype: str = "bf16",
    policy: MemoryPolicy | None = None,
) -> int:
    """Sequences of `context_len` tokens the KV cache holds at once (0 when the model does not fit)."""
    fit = check_fit(model, accelerator, gpus, weight_dtype, context_len, kv_dtype, policy)
    return fit.max_sequences if fit.fits else 0


def fit_table(
    model: ModelArch,
    accelerators: Iterable[AcceleratorType],
    weight_dtype: str,
    context_len: int,
    kv_dtype: str = "bf16",
    policy: MemoryPolicy | None = None,
    gpu_counts: Sequence[int] | None = None,
) -> list[Fit]:
    """One Fit per accelerator and GPU count (default: every tensor-parallel size the machines allow)."""
    return [
        check_fit(model, accelerator, gpus, weight_dtype, context_len, kv_dtype, policy)
        for accelerator in accelerators
        for gpus in (gpu_counts or tensor_parallel_sizes(model, accelerator))
    ]


def cheapest_fit(fits: Iterable[Fit]) -> Fit | None:
    """The fitting placement with the lowest $/hour (placements without a price are skipped)."""
    priced = [f for f in fits if f.fits and f.cost_per_hour is not None]
    return min(priced, key=lambda f: (f.cost_per_hour, f.gpus), default=None)
