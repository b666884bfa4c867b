"""The plan: where a model fits, what each placement costs, and the cheapest one (optionally per token).

``plan_report`` joins the memory fit table with roofline predictions and the fewest GPUs each weight dtype
needs; ``render_plan`` and ``render_minimum_gpus`` draw them with rich.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from rich.table import Table

from servesweep.catalog import AcceleratorType, Catalog, load_catalog
from servesweep.planner.calibrate import Calibration
from servesweep.planner.memory import (
    DTYPE_BYTES,
    Fit,
    MemoryPolicy,
    Parallelism,
    cheapest_fit,
    fit_table,
    max_concurrent_sequences,
    minimum_parallelism,
    normalize_dtype,
)
from servesweep.planner.models import ModelArch, get_model
from servesweep.planner.roofline import Efficiency, Prediction, predict_sweep

DEFAULT_MAX_BATCH = 256  # vLLM's default max_num_seqs
_ACTIVATION_DTYPES = {"fp32", "bf16", "fp16"}
MINIMUM_GPU_DTYPES = ("bf16", "fp8", "int8", "int4")  # weight dtypes the minimum-GPU table always shows
NO_FIT_WARNING = "the model fits no placement considered"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Placement(_Strict):
    """One accelerator x GPU count: its memory fit and, with a workload, its best predicted point."""

    fit: Fit
    best: Prediction | None = None  # lowest $/M output tokens among batch sizes that fit and meet the SLO
    note: str = ""  # why there is no best point although predictions were made


class PlanResult(_Strict):
    model: ModelArch
    weight_dtype: str
    kv_dtype: str
    context_len: int
    policy: MemoryPolicy
    catalog_version: str
    input_tokens: int | None
    output_tokens: int | None
    slo_ttft_ms: float | None
    slo_tpot_ms: float | None
    placements: list[Placement]
    cheapest_fit: Fit | None  # lowest $/hour that fits
    cheapest_per_token: Prediction | None  # lowest $/M output tokens within the SLO
    predictions: list[Prediction]
    minimum_gpus: list[Parallelism] = []  # per accelerator and weight dtype: the fewest GPUs that serve it
    rows: list[dict[str, Any]] = []  # predicted `points` rows, when built for a run (components/plan.py)
    warnings: list[str] = []


def plan_report(
    model: ModelArch | str,
    accelerators: Sequence[str] | None = None,
    dtype: str = "bf16",
    context_len: int | None = None,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    batch_sizes: Sequence[int] | None = None,
    gpu_counts: Sequence[int] | None = None,
    activation_dtype: str | None = None,
    kv_dtype: str | None = None,
    policy: MemoryPolicy | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    efficiency: Efficiency | None = None,
    calibration: Calibration | None = None,
    server_kind: str = "vllm",
    catalog: Catalog | None = None,
) -> PlanResult:
    """Fit table of `model` with `dtype` weights on each accelerator (default: every GPU in the catalog) and
    GPU count, at `context_len` tokens per sequence (default: the model's maximum, as vLLM does).

    With `input_tokens` and `output_tokens`, every fitting placement is also predicted over `batch_sizes`
    (default: powers of two up to what its KV cache holds, at most 256) and its cheapest point per token
    within the SLO kept. Efficiency: `calibration`'s factors for (`server_kind`, accelerator), else
    `efficiency`, else the raw roofline.
    """
    catalog = catalog or load_catalog()
    model = get_model(model) if isinstance(model, str) else model
    weight_dtype = normalize_dtype(dtype)
    activation = normalize_dtype(activation_dtype) if activation_dtype else _activation_for(weight_dtype)
    kv = normalize_dtype(kv_dtype or activation)
    policy = policy or MemoryPolicy()
    context_len = context_len or model.max_position_embeddings
    names = accelerators or [name for name in catalog.accelerators if name != "cpu"]
    fits = fit_table(model, [catalog.get(n) for n in names], weight_dtype, context_len, kv, policy, gpu_counts)

    placements = [Placement(fit=fit) for fit in fits]
    predictions: list[Prediction] = []
    if input_tokens and output_tokens:
        workload = _Workload(input_tokens, output_tokens, batch_sizes, slo_ttft_ms, slo_tpot_ms)
        options = {"activation_dtype": activation, "kv_dtype": kv, "policy": policy}
        for index, fit in enumerate(fits):
            if not fit.fits and batch_sizes is None:
                continue  # nothing to predict for a placement that cannot start
            chosen = (calibration.efficiency_for(server_kind, fit.accelerator, fit.weight_dtype) if calibration
                      else efficiency)
            placements[index], swept = _predict_placement(
                model, catalog.get(fit.accelerator), fit, workload, chosen or Efficiency(), options
            )
            predictions.extend(swept)

    bests = [p.best for p in placements if p.best and p.best.usd_per_million_output_tokens is not None]
    minimum = _minimum_gpus(model, [catalog.get(n) for n in names], weight_dtype, context_len, policy,
                            activation_dtype, kv_dtype)
    return PlanResult(
        model=model,
        weight_dtype=weight_dtype,
        kv_dtype=kv,
        context_len=context_len,
        policy=policy,
        catalog_version=catalog.catalog_version,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        slo_ttft_ms=slo_ttft_ms,
        slo_tpot_ms=slo_tpot_ms,
        placements=placements,
        cheapest_fit=cheapest_fit(fits),
        cheapest_per_token=min(bests, key=lambda p: p.usd_per_million_output_tokens or 0.0, default=None),
        predictions=predictions,
        minimum_gpus=minimum,
        warnings=_warnings(model, context_len, fits),
    )


@dataclass(frozen=True)
class _Workload:
    input_tokens: int
    output_tokens: int
    batch_sizes: Sequence[int] | None
    slo_ttft_ms: float | None
    slo_tpot_ms: float | None


def _predict_placement(
    model: ModelArch,
    accelerator: AcceleratorType,
    fit: Fit,
    workload: _Workload,
    efficiency: Efficiency,
    options: dict[str, Any],
) -> tuple[Placement, list[Prediction]]:
    """Predictions over the batch sizes, and the placement with its best point (or why there is none)."""
    sequence_len = workload.input_tokens + workload.output_tokens
    sizes = workload.batch_sizes or _default_batch_sizes(model, accelerator, fit, sequence_len, options["policy"])
    swept = predict_sweep(model, accelerator, fit.gpus, sizes, workload.input_tokens, workload.output_tokens,
                          fit.weight_dtype, efficiency=efficiency, **options)
    best = _best(swept, workload.slo_ttft_ms, workload.slo_tpot_ms)
    return Placement(fit=fit, best=best, note="" if best else _no_best_note(swept)), swept


def _minimum_gpus(
    model: ModelArch, accelerators: Sequence[AcceleratorType], weight_dtype: str, context_len: int,
    policy: MemoryPolicy, activation_dtype: str | None, kv_dtype: str | None,
) -> list[Parallelism]:
    """Fewest GPUs per accelerator for the chosen weight dtype and the usual others, heaviest dtype first."""
    dtypes = sorted({weight_dtype, *MINIMUM_GPU_DTYPES}, key=lambda d: (-DTYPE_BYTES[d], d != weight_dtype, d))
    result = []
    for accelerator in accelerators:
        for dtype in dtypes:
            kv = normalize_dtype(kv_dtype or activation_dtype or _activation_for(dtype))
            result.append(minimum_parallelism(model, accelerator, dtype, context_len, kv, policy))
    return result


def _activation_for(weight_dtype: str) -> str:
    # Quantized weights still compute and cache in 16 bits unless told otherwise.
    return weight_dtype if weight_dtype in _ACTIVATION_DTYPES else "bf16"


def _default_batch_sizes(
    model: ModelArch, accelerator: AcceleratorType, fit: Fit, sequence_len: int, policy: MemoryPolicy
) -> list[int]:
    """Powers of two up to the `sequence_len`-token sequences the KV cache holds (at most 256), plus that cap."""
    cap = min(
        max_concurrent_sequences(model, accelerator, fit.gpus, fit.weight_dtype, sequence_len, fit.kv_dtype, policy),
        DEFAULT_MAX_BATCH,
    )
    sizes = [2**i for i in range(cap.bit_length())]
    return sizes + ([cap] if cap and cap not in sizes else [])


def _best(predictions: list[Prediction], slo_ttft_ms: float | None, slo_tpot_ms: float | None) -> Prediction | None:
    """Cheapest per token among points that fit and meet the SLO; the highest throughput when unpriced."""
    feasible = [
        p for p in predictions
        if p.fits and (slo_ttft_ms is None or p.ttft_ms <= slo_ttft_ms)
        and (slo_tpot_ms is None or p.tpot_ms <= slo_tpot_ms)
    ]
    return min(
        feasible,
        key=lambda p: (p.usd_per_million_output_tokens or float("inf"), -p.output_token_throughput),
        default=None,
    )


def _no_best_note(predictions: list[Prediction]) -> str:
    return "no batch meets the SLO" if any(p.fits for p in predictions) else "no batch fits in memory"


def _warnings(model: ModelArch, context_len: int, fits: list[Fit]) -> list[str]:
    warnings = []
    if context_len > model.max_position_embeddings:
        warnings.append(f"context {context_len} exceeds the model's {model.max_position_embeddings} positions")
    if not any(f.fits for f in fits):
        warnings.append(f"{NO_FIT_WARNING}; try a smaller dtype or more GPUs")
    return warnings


# --- rendering -------------------------------------------------------------------------------------------


def render_plan(result: PlanResult) -> Table:
    """The fit table, one row per placement; with a workload, its best predicted point as well."""
    with_workload = result.input_tokens is not None and result.output_tokens is not None
    table = Table(title=_title(result), caption=_caption(result), show_lines=False)
    for header in ("Accelerator", "GPUs", "Machine", "Weights/GPU GB", "Limit GB", "KV/GPU GB",
                   f"Seqs @{result.context_len}", "$/hour", "Fit"):
        table.add_column(header, justify="left" if header in ("Accelerator", "Machine", "Fit") else "right")
    if with_workload:
        for header in ("Batch", "TTFT ms", "TPOT ms", "Out tok/s", "$/M out tok"):
            table.add_column(header, justify="right")
    for placement in result.placements:
        best_cells = _best_cells(placement) if with_workload else ()
        table.add_row(*_fit_cells(placement.fit), *best_cells, style=None if placement.fit.fits else "dim")
    return table


def render_minimum_gpus(result: PlanResult) -> Table:
    """One row per accelerator, one column per weight dtype: the fewest GPUs a server of the model needs."""
    dtypes = list(dict.fromkeys(p.weight_dtype for p in result.minimum_gpus))
    table = Table(title=f"{result.model.name}: minimum GPUs per server, context {result.context_len}",
                  caption="TP: tensor parallel on one machine; PP: pipeline stages, one machine each")
    table.add_column("Accelerator")
    for dtype in dtypes:
        table.add_column(f"{dtype} (chosen)" if dtype == result.weight_dtype else dtype, justify="right")
    for name in dict.fromkeys(p.accelerator for p in result.minimum_gpus):
        cells = {p.weight_dtype: p.describe() for p in result.minimum_gpus if p.accelerator == name}
        table.add_row(name, *(cells[d] for d in dtypes))
    return table


def minimum_gpus_lines(result: PlanResult) -> list[str]:
    """Per accelerator, what the chosen weight dtype needs, e.g. 'llama3-70b bf16 on nvidia-h200-141gb: needs
    tensor parallelism: 2 GPUs (TP 2)'."""
    return [f"{result.model.name} {p.weight_dtype} on {p.accelerator}: {p.reason}"
            for p in result.minimum_gpus if p.weight_dtype == result.weight_dtype]


def _title(result: PlanResult) -> str:
    model = result.model
    return (f"{model.name}: {model.parameters / 1e9:.1f}B parameters, {result.weight_dtype} weights, "
            f"{result.kv_dtype} KV cache, weights <= {result.policy.weight_fraction:.0%} of GPU memory")


def _caption(result: PlanResult) -> str:
    lines = [f"catalog {result.catalog_version}; GB = 1e9 bytes; roofline predictions are lower bounds on time "
             "unless calibrated"]
    if result.cheapest_fit:
        fit = result.cheapest_fit
        lines.append(f"cheapest fit: {fit.gpus} x {fit.accelerator} ({fit.machine_type}) at ${fit.cost_per_hour:.2f}/h")
    if result.cheapest_per_token:
        best = result.cheapest_per_token
        lines.append(f"cheapest per token: {best.gpus} x {best.accelerator}, batch {best.batch_size}, "
                     f"${best.usd_per_million_output_tokens:.3f}/M output tokens")
    lines.extend(f"warning: {w}" for w in result.warnings)
    return "\n".join(lines)


def _fit_cells(fit: Fit) -> tuple[str, ...]:
    return (
        fit.accelerator,
        str(fit.gpus),
        fit.machine_type or "-",
        f"{fit.weights_per_gpu_gb:.1f}",
        f"{fit.weight_limit_gb:.1f}",
        f"{fit.kv_budget_per_gpu_gb:.1f}",
        str(fit.max_sequences) if fit.fits else "-",
        _money(fit.cost_per_hour),
        "yes" if fit.fits else fit.reason,
    )


def _best_cells(placement: Placement) -> tuple[str, ...]:
    best = placement.best
    if best is None:
        return (placement.note or "-",) + ("-",) * 4
    return (
        str(best.batch_size),
        f"{best.ttft_ms:.0f}",
        f"{best.tpot_ms:.1f}",
        f"{best.output_token_throughput:.0f}",
        _money(best.usd_per_million_output_tokens, digits=3),
    )


def _money(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
