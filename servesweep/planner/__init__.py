"""Planner: will a model fit, on which GPUs, and what will it cost per token (the guide's first three steps).

- ``models``: architecture facts of popular open models, or any local config.json.
- ``memory``: weights and KV-cache sizes, the 80% weights rule, fit on 1..N GPUs, cheapest fit.
- ``roofline``: predicted TTFT/TPOT/throughput/$ per point, and ``points`` rows with source='predicted'.
- ``calibrate``: per-(server, accelerator) efficiency factors fitted to measured points.
- ``report``: ``plan_report`` (typed result), ``render_plan`` and ``render_minimum_gpus`` (rich tables).
"""

from servesweep.planner.calibrate import Calibration, CalibrationGroup, calibrate
from servesweep.planner.memory import (
    DTYPE_BYTES,
    Fit,
    MemoryPolicy,
    Parallelism,
    cheapest_fit,
    check_fit,
    fit_table,
    kv_bytes_per_token,
    max_concurrent_sequences,
    minimum_parallelism,
    weight_bytes,
    weight_gb,
    weight_limit_gb,
)
from servesweep.planner.models import ModelArch, ModelError, from_config_json, get_model, load_models
from servesweep.planner.report import Placement, PlanResult, plan_report, render_minimum_gpus, render_plan
from servesweep.planner.roofline import Efficiency, Prediction, predict, predict_sweep, prediction_rows

__all__ = [
    "DTYPE_BYTES", "Calibration", "CalibrationGroup", "Efficiency", "Fit", "MemoryPolicy", "ModelArch",
    "ModelError", "Parallelism", "Placement", "PlanResult", "Prediction", "calibrate", "check_fit", "cheapest_fit",
    "fit_table", "from_config_json", "get_model", "kv_bytes_per_token", "load_models", "max_concurrent_sequences",
    "minimum_parallelism", "plan_report", "predict", "predict_sweep", "prediction_rows", "render_minimum_gpus",
    "render_plan", "weight_bytes", "weight_gb", "weight_limit_gb",
]
