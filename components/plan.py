"""Plan step: roofline predictions for a benchmark spec, before anything is deployed.

Orchestrator-free: takes the spec, returns a PlanResult whose ``rows`` are ``points`` rows with
source='predicted' (one per workload x batch size) for the lake, next to the measured ones.
"""

from __future__ import annotations

from typing import Any

from servesweep.catalog import Catalog
from servesweep.planner.calibrate import Calibration, load_calibrations
from servesweep.planner.memory import Parallelism, normalize_dtype
from servesweep.planner.models import from_shape
from servesweep.planner.report import NO_FIT_WARNING, PlanResult, plan_report
from servesweep.planner.roofline import prediction_rows, weight_dtype_for
from servesweep.spec import BenchmarkSpec


def plan(spec: BenchmarkSpec, catalog: Catalog | None = None, calibration: Calibration | None = None) -> PlanResult:
    """Fit and predictions of the spec's model preset on its accelerator type and count.

    Predictions use the stored calibration of (server kind, accelerator) unless `calibration` is given
    (servesweep/data/calibrations.yaml); a pair never calibrated gets the raw roofline.
    The fit table uses ``server.max_model_len`` as the context (vLLM reserves KV for one such sequence);
    predictions cover every workload and batch size of the sweep, and the result's best/cheapest fields
    refer to the first workload. A run id is derived when the spec has none. When `accelerator.count` GPUs
    cannot hold the model, every predicted row is failed with the fit's reason and the GPU count (tensor or
    pipeline parallel) the model needs, and `warnings` says so.
    """
    spec = spec.with_run_id()
    calibration = calibration or load_calibrations()
    model = from_shape(spec.model.preset, spec.model.resolved_shape())
    reports = [
        plan_report(
            model,
            [spec.accelerator.type],
            weight_dtype_for(spec.quantization, spec.model.dtype),
            spec.server.max_model_len,
            input_tokens=workload.input_tokens,
            output_tokens=workload.output_tokens,
            batch_sizes=spec.sweep.batch_sizes,
            gpu_counts=[spec.accelerator.count],
            activation_dtype=normalize_dtype(spec.model.dtype),
            slo_ttft_ms=spec.slo.ttft_p99_ms,
            slo_tpot_ms=spec.slo.tpot_p99_ms,
            calibration=calibration,
            server_kind=spec.server.kind,
            catalog=catalog,
        )
        for workload in spec.workloads
    ]
    predictions = [p for report in reports for p in report.predictions]
    rows = _with_needs(prediction_rows(
        predictions,
        run_id=spec.run_id,
        run_name=spec.name,
        model_name=spec.model.name,
        model_preset=spec.model.preset,
        model_parameters=model.parameters,
        model_dtype=spec.model.dtype,
        quantization=spec.quantization,
        server_kind=spec.server.kind,
    ), reports[0])
    count = _count_warning(spec, reports[0])
    # The specific warning (how many GPUs) replaces the generic "fits no placement considered".
    warnings = [w for w in reports[0].warnings if not (count and w.startswith(NO_FIT_WARNING))] + count
    return reports[0].model_copy(update={"predictions": predictions, "rows": rows, "warnings": warnings})


def _needs(result: PlanResult) -> Parallelism | None:
    """What the spec's weight dtype needs on its accelerator, when its GPU count is too few to hold the model."""
    fit = result.placements[0].fit
    if fit.fits:
        return None
    return next((p for p in result.minimum_gpus if p.weight_dtype == result.weight_dtype and p.gpus > fit.gpus),
                None)


def _with_needs(rows: list[dict[str, Any]], result: PlanResult) -> list[dict[str, Any]]:
    """Failed rows of a placement too small for the model also say how many GPUs it needs."""
    needs = _needs(result)
    if needs is None:
        return rows
    return [{**row, "failure_reason": f"{row['failure_reason']}; {needs.reason}"} if row["status"] == "failed"
            else row for row in rows]


def _count_warning(spec: BenchmarkSpec, result: PlanResult) -> list[str]:
    needs = _needs(result)
    if needs is None:
        return []
    return [f"accelerator.count {spec.accelerator.count} is too few for {spec.model.preset} in "
            f"{result.weight_dtype} on {spec.accelerator.type}: it {needs.reason}"]
