"""The quantize question's rows: per measured config, the variant it served, what its weights take, the GPUs it
needs, its cost at the ideal batch and its accuracy against the unquantized baseline.

Weight memory is the checkpoint's own bytes (runs.weight_bytes, the quantize step's measurement) when the run
served real weights, else the planner's parameters x bytes per weight (dummy weights, which the server draws).
The GPU count is the planner's fewest GPUs of the config's accelerator that hold the weights by the guide's
80 % rule with room for one sequence of the workload (servesweep.planner.memory.minimum_parallelism).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import duckdb

from servesweep.analysis.machines import weight_dtype_of
from servesweep.analysis.models import IdealBatch, QuantizeVariant, VariantAccuracy
from servesweep.catalog import GB, Catalog
from servesweep.planner import ModelError, get_model
from servesweep.planner.memory import MemoryPolicy, minimum_parallelism, weight_gb
from servesweep.planner.models import ModelArch

WEIGHT_BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int4": 4}


def quantize_variants(connection: duckdb.DuckDBPyConnection, ideals: Sequence[IdealBatch], catalog: Catalog,
                      policy: MemoryPolicy | None = None) -> list[QuantizeVariant]:
    """One QuantizeVariant per measured config (the ``quantize_variants`` view with the planner's numbers)."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in connection.sql("SELECT * FROM quantize_variants WHERE source = 'measured'").to_arrow_table().to_pylist():
        rows[row["config_id"]].append(row)
    variants = []
    for ideal in (row for row in ideals if row.source == "measured" and row.config_id in rows):
        config = rows[ideal.config_id]
        variants.append(_variant(ideal, config, catalog, policy or MemoryPolicy()))
    return variants


def _variant(ideal: IdealBatch, rows: list[dict[str, Any]], catalog: Catalog, policy: MemoryPolicy) -> QuantizeVariant:
    first = rows[0]
    dtype = weight_dtype_of(first["quantization"], first["model_dtype"])
    model = _model(first["model_preset"])
    gb, source = _weight_memory(first["weight_bytes"], model, dtype)
    gpus, reason = _gpus_needed(model, ideal, dtype, catalog, policy)
    accuracy = [VariantAccuracy.model_validate({name: row[name] for name in VariantAccuracy.model_fields})
                for row in rows if row["task"] is not None]
    return QuantizeVariant(
        comparison_group=ideal.comparison_group, config_id=ideal.config_id, config_label=ideal.config_label,
        run_id=ideal.run_id, accelerator=ideal.accelerator, accelerator_count=ideal.accelerator_count,
        quantization=str(first["quantization"]), weight_dtype=dtype, weight_bits=WEIGHT_BITS.get(dtype, 16),
        weight_gb=gb, weight_source=source, gpus_needed=gpus, gpus_reason=reason, meets_slo=ideal.meets_slo,
        ideal_batch_size=ideal.ideal_batch_size, output_token_throughput=ideal.output_token_throughput,
        output_tokens_per_dollar=ideal.output_tokens_per_dollar,
        usd_per_million_output_tokens=ideal.usd_per_million_output_tokens, accuracy=accuracy)


def _model(preset: str | None) -> ModelArch | None:
    if not preset:
        return None
    try:
        return get_model(preset)
    except (ModelError, KeyError, ValueError, OSError):
        return None


def _weight_memory(measured_bytes: int | None, model: ModelArch | None, dtype: str) -> tuple[float | None, str]:
    if measured_bytes:
        return measured_bytes / GB, "checkpoint"
    if model is not None:
        return weight_gb(model.parameters, dtype), "planner"
    return None, "none"


def _gpus_needed(model: ModelArch | None, ideal: IdealBatch, dtype: str, catalog: Catalog,
                 policy: MemoryPolicy) -> tuple[int | None, str]:
    accelerator = catalog.accelerators.get(str(ideal.accelerator))
    if accelerator is None or accelerator.name == "cpu":
        return None, f"{ideal.accelerator}: no GPU to count"
    if model is None:
        return None, "model not in the planner's models"
    context = (ideal.input_tokens or 0) + (ideal.output_tokens or 0)
    parallel = minimum_parallelism(model, accelerator, dtype, max(context, 1), policy=policy)
    return (parallel.gpus, parallel.reason) if parallel.fits else (None, parallel.reason)
