"""Which machine type? The candidate GCE machine types for each measured comparison group, from the planner and
the catalog, with the lake's measurements where it has them.

For a group (one model serving one workload shape) and the quantization its cheapest config used, each GPU type
of the catalog gets the fewest GPUs that hold the model by the guide's rule (weights at most
`MemoryPolicy.weight_fraction`, 80 %, of each GPU's memory, so 20 % or more is left for the KV cache, which must
hold at least one sequence of the workload's length; tensor parallel within one machine where one GPU is not
enough), the machine type that server lands on, and its throughput: the lake's ideal batch when the group
measured that accelerator and GPU count, else the planner's roofline prediction (calibrated where
servesweep/data/calibrations.yaml has the pair) within the SLO. Costs use the catalog as given (its pricing
already chosen): the machine's price per GPU-hour times the server's GPUs.

Input and output tokens are costed apart the way `point_costs` does it: a request's time before its first token
(TTFT / E2E) is the prefill share of the machine's time, billed to input tokens; the rest to output tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from servesweep.analysis.models import IdealBatch, MachineOption
from servesweep.catalog import AcceleratorType, Catalog
from servesweep.planner import ModelError, get_model
from servesweep.planner.calibrate import Calibration, load_calibrations
from servesweep.planner.memory import MemoryPolicy, check_fit, minimum_parallelism, normalize_dtype
from servesweep.planner.models import ModelArch
from servesweep.planner.report import plan_report
from servesweep.planner.roofline import Efficiency
from servesweep.quantization import CHECKPOINT_SCHEMES, SERVER_WEIGHT_DTYPE
from servesweep.spec import SLOSpec

_SERIES = (("g2-", "G2"), ("a2-highgpu", "A2"), ("a2-megagpu", "A2 mega"), ("a2-ultragpu", "A2 ultra"),
           ("a3-highgpu", "A3 High"), ("a3-megagpu", "A3 Mega"), ("a3-ultragpu", "A3 Ultra"), ("a3-edgegpu", "A3 Edge"),
           ("a4-", "A4"), ("a4x-", "A4X"), ("g4-", "G4"))


def machine_series(machine_type: str | None) -> str:
    """'a3-ultragpu-8g' -> 'A3 Ultra'; the machine type's own name when its series is not known."""
    if machine_type is None:
        return "-"
    return next((name for prefix, name in _SERIES if machine_type.startswith(prefix)), machine_type)


def weight_dtype_of(quantization: str | None, model_dtype: str | None) -> str:
    """The dtype the planner charges for the weights: the quantization's, else the model's (bf16 by default)."""
    if quantization in SERVER_WEIGHT_DTYPE:
        return SERVER_WEIGHT_DTYPE[quantization]
    if quantization in CHECKPOINT_SCHEMES:
        return CHECKPOINT_SCHEMES[quantization].weight_dtype
    try:
        return normalize_dtype(model_dtype or "bf16")
    except ValueError:
        return "bf16"


@dataclass(frozen=True)
class _Workload:
    group: str
    model: ModelArch
    quantization: str
    weight_dtype: str
    server_kind: str
    input_tokens: int
    output_tokens: int
    anchor: float = 1.0  # measured / raw-roofline throughput of the group's best measured config


_GROUPS_SQL = """
    SELECT DISTINCT comparison_group, model_preset, model_dtype, quantization, server_kind, input_tokens,
           output_tokens
    FROM point_costs WHERE source = 'measured'
"""


def machine_options(
    connection: duckdb.DuckDBPyConnection, ideals: Sequence[IdealBatch], slo: SLOSpec, catalog: Catalog,
    calibration: Calibration | None = None, policy: MemoryPolicy | None = None,
) -> tuple[list[MachineOption], list[str]]:
    """The machine types per measured comparison group, and notes on groups the planner cannot place."""
    calibration = calibration or load_calibrations()
    rows = connection.sql(_GROUPS_SQL).fetchall()
    measured = [row for row in ideals if row.source == "measured"]
    options: list[MachineOption] = []
    notes: list[str] = []
    for group in sorted({r.comparison_group for r in measured}):
        in_group = [r for r in measured if r.comparison_group == group]
        best = max(in_group, key=lambda r: (r.meets_slo, r.output_tokens_per_dollar or 0.0,
                                            r.output_token_throughput or 0.0))
        info = next((row for row in rows if row[0] == group and row[3] == best.quantization
                     and row[4] == best.server_kind), None)
        if info is None or info[5] is None or info[6] is None:
            continue
        try:
            if not info[1]:
                raise ModelError("no model preset recorded")
            model = get_model(str(info[1]))
        except (ModelError, KeyError, ValueError, OSError):
            notes.append(f"{group}: model preset {info[1]!r} is not in the planner's models, so the machine-type "
                         "question lists measured placements only")
            options += [_measured_only(group, row, catalog) for row in in_group
                        if row.quantization == best.quantization]
            continue
        workload = _Workload(group, model, str(best.quantization), weight_dtype_of(best.quantization, info[2]),
                             str(info[4] or "vllm"), int(info[5]), int(info[6]))
        workload = _anchored(workload, best, catalog, policy or MemoryPolicy())
        if workload.anchor != 1.0:
            notes.append(f"{group}: machine types not measured are predicted by the roofline scaled by "
                         f"{workload.anchor:.2g}, the share of its roofline prediction that {best.config_label} "
                         f"reached at batch {best.ideal_batch_size} (the same server efficiency assumed on every GPU)")
        for accelerator in catalog.accelerators.values():
            if accelerator.name != "cpu":
                options.append(_option(workload, accelerator, in_group, slo, catalog, calibration,
                                       policy or MemoryPolicy()))
    return options, notes


def _anchored(workload: _Workload, best: IdealBatch, catalog: Catalog, policy: MemoryPolicy) -> _Workload:
    """The workload with its anchor: measured throughput at the best config's ideal batch over the raw roofline's
    prediction of that same point. A raw roofline is an upper bound; the anchor carries the measured gap over."""
    if not best.meets_slo or not best.output_token_throughput or not best.ideal_batch_size \
            or best.accelerator not in catalog.accelerators:
        return workload
    context = workload.input_tokens + workload.output_tokens
    plan = plan_report(workload.model, [str(best.accelerator)], workload.weight_dtype, context,
                       input_tokens=workload.input_tokens, output_tokens=workload.output_tokens,
                       batch_sizes=[best.ideal_batch_size], gpu_counts=[best.accelerator_count or 1],
                       efficiency=Efficiency(), policy=policy, catalog=catalog)
    predicted = next((p.output_token_throughput for p in plan.predictions if p.output_token_throughput > 0), None)
    if predicted is None:
        return workload
    return _Workload(**{**workload.__dict__, "anchor": best.output_token_throughput / predicted})


def _option(workload: _Workload, accelerator: AcceleratorType, measured: Sequence[IdealBatch], slo: SLOSpec,
            catalog: Catalog, calibration: Calibration, policy: MemoryPolicy) -> MachineOption:
    context = workload.input_tokens + workload.output_tokens
    parallel = minimum_parallelism(workload.model, accelerator, workload.weight_dtype, context, policy=policy)
    gpus = parallel.tensor_parallel
    fit = check_fit(workload.model, accelerator, gpus, workload.weight_dtype, context, policy=policy)
    machine = accelerator.machine_for(gpus)
    fits = parallel.fits and parallel.pipeline_parallel == 1 and fit.fits
    reason = parallel.reason if parallel.fits and parallel.pipeline_parallel == 1 else (
        parallel.reason if not parallel.fits else f"one machine is not enough: {parallel.reason}")
    base = MachineOption(
        comparison_group=workload.group, series=machine_series(machine.machine_type if machine else None),
        machine_type=machine.machine_type if machine else None, accelerator=accelerator.name,
        weight_dtype=workload.weight_dtype, gpus=gpus, gpus_per_machine=machine.gpus if machine else None,
        fits=fits, fit_reason=reason, weights_per_gpu_gb=fit.weights_per_gpu_gb, weight_limit_gb=fit.weight_limit_gb,
        kv_share=max(0.0, 1 - fit.weights_per_gpu_gb / accelerator.gpu_memory_gb), max_sequences=fit.max_sequences,
        source="none", cost_per_hour=catalog.hourly_cost(accelerator.name, gpus) if machine else None,
    )
    if not fits:
        return base
    same = [r for r in measured if r.accelerator == accelerator.name and (r.accelerator_count or 1) == gpus
            and r.quantization == workload.quantization and r.meets_slo]
    if same:
        row = max(same, key=lambda r: r.output_token_throughput or 0.0)
        return base.model_copy(update={
            "source": "measured", "batch_size": row.ideal_batch_size, "output_token_throughput":
            row.output_token_throughput, "meets_slo": True, "point_id": row.point_id,
            "cost_per_hour": row.cost_per_hour, "usd_per_million_output_tokens": row.usd_per_million_output_tokens,
            "usd_per_million_input_tokens": row.usd_per_million_input_tokens_split,
            "usd_per_million_output_tokens_split": row.usd_per_million_output_tokens_split,
        })
    # Anchored: the raw roofline with its times stretched by 1 / anchor (so the SLO bounds shrink by the anchor).
    # Without a measured anchor, the calibration of (server, accelerator) where one exists, else the raw roofline.
    anchor = workload.anchor
    scale = {"efficiency": Efficiency()} if anchor != 1.0 else {"calibration": calibration}
    plan = plan_report(workload.model, [accelerator.name], workload.weight_dtype, context,
                       input_tokens=workload.input_tokens, output_tokens=workload.output_tokens, gpu_counts=[gpus],
                       slo_ttft_ms=slo.ttft_p99_ms * anchor if slo.ttft_p99_ms else None,
                       slo_tpot_ms=slo.tpot_p99_ms * anchor if slo.tpot_p99_ms else None,
                       server_kind=workload.server_kind, policy=policy, catalog=catalog, **scale)
    best = plan.placements[0].best if plan.placements else None
    if best is None:
        return base.model_copy(update={"source": "predicted", "meets_slo": False})
    output_tps, input_tps = best.output_token_throughput * anchor, best.input_token_throughput * anchor
    split = _split_costs(base.cost_per_hour, output_tps, input_tps, best.ttft_ms, best.e2e_ms)
    return base.model_copy(update={
        "source": "predicted", "batch_size": best.batch_size, "output_token_throughput": output_tps,
        "meets_slo": True, "usd_per_million_output_tokens": _per_million(base.cost_per_hour, output_tps),
        "usd_per_million_input_tokens": split[0], "usd_per_million_output_tokens_split": split[1],
    })


def _measured_only(group: str, row: IdealBatch, catalog: Catalog) -> MachineOption:
    entry = catalog.accelerators.get(str(row.accelerator))
    machine = entry.machine_for(row.accelerator_count or 1) if entry else None
    return MachineOption(
        comparison_group=group, series=machine_series(machine.machine_type if machine else None),
        machine_type=machine.machine_type if machine else None, accelerator=str(row.accelerator),
        weight_dtype=str(row.quantization), gpus=row.accelerator_count or 1,
        gpus_per_machine=machine.gpus if machine else None, fits=True, fit_reason="measured", weights_per_gpu_gb=0.0,
        weight_limit_gb=0.0, kv_share=0.0, max_sequences=0, source="measured", batch_size=row.ideal_batch_size,
        output_token_throughput=row.output_token_throughput, meets_slo=row.meets_slo, point_id=row.point_id,
        cost_per_hour=row.cost_per_hour, usd_per_million_output_tokens=row.usd_per_million_output_tokens)


def _per_million(cost_per_hour: float | None, tokens_per_s: float | None) -> float | None:
    if not cost_per_hour or not tokens_per_s or tokens_per_s <= 0:
        return None
    return 1e6 * cost_per_hour / (tokens_per_s * 3600)


def _split_costs(cost_per_hour: float | None, output_tps: float, input_tps: float, ttft_ms: float,
                 e2e_ms: float) -> tuple[float | None, float | None]:
    """($/M input tokens, $/M output tokens): the prefill share TTFT/E2E of the time billed to input tokens."""
    if not cost_per_hour or e2e_ms <= 0:
        return None, None
    share = min(max(ttft_ms / e2e_ms, 0.0), 1.0)
    return _per_million(cost_per_hour * share, input_tps), _per_million(cost_per_hour * (1 - share), output_tps)
