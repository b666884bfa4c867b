"""Calibration: fit per-(server_kind, accelerator) efficiency factors from measured points.

Each measured point's TTFT p50 and TPOT p50 are compared with the roofline at efficiency 1. Two factors
per group, ``flops_efficiency`` (fraction of peak FLOPs; prefill) and ``bandwidth_efficiency`` (fraction of
HBM bandwidth; decode), minimise the squared log error over both metrics. A prediction is a max of a
compute and a memory term, so the loss is piecewise; a coarse-to-fine grid search in log space finds its
minimum deterministically. A tiny pull towards 1.0 settles a factor the data cannot identify (say, no
compute-bound point) on the roofline value instead of an arbitrary one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from servesweep.catalog import Catalog, load_catalog
from servesweep.planner.memory import normalize_dtype
from servesweep.planner.models import ModelArch, get_model
from servesweep.planner.roofline import Efficiency, RooflineTerms, roofline_terms, weight_dtype_for

_LOG_RANGE = (float(np.log(1e-3)), float(np.log(4.0)))  # efficiencies searched: 0.1% .. 400% of peak
_PULL_TO_ONE = 1e-6
_ACTIVATION_DTYPES = {"fp32", "bf16", "fp16"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalibrationGroup(_Strict):
    server_kind: str
    accelerator: str
    points: int
    efficiency: Efficiency
    ttft_mape_before: float | None  # percent, at efficiency 1 (the raw roofline)
    ttft_mape_after: float | None
    tpot_mape_before: float | None
    tpot_mape_after: float | None


class Calibration(_Strict):
    groups: list[CalibrationGroup]

    def efficiency_for(self, server_kind: str, accelerator: str) -> Efficiency:
        """The fitted factors for a server and accelerator; the raw roofline (1.0) when never measured."""
        for group in self.groups:
            if (group.server_kind, group.accelerator) == (server_kind, accelerator):
                return group.efficiency
        return Efficiency()


@dataclass(frozen=True)
class _Observation:
    """One measured point reduced to its roofline terms and measured latencies (seconds)."""

    terms: RooflineTerms
    ttft_s: float | None
    tpot_s: float | None


def calibrate(
    points: pa.Table | Iterable[Mapping[str, Any]],
    model: ModelArch | None = None,
    catalog: Catalog | None = None,
) -> Calibration:
    """Fit efficiency factors per (server_kind, accelerator) and report MAPE before and after.

    `points` are ``points`` rows (a pyarrow Table or dicts) with accelerator, server_kind, batch_size,
    input_tokens, output_tokens, ttft_p50_ms, tpot_p50_ms; accelerator_count, quantization and
    model_dtype are used when present. Predicted and failed rows are skipped. Without `model`, each row's
    ``model_preset`` is looked up (model catalog, then spec presets).
    """
    catalog = catalog or load_catalog()
    groups: dict[tuple[str, str], list[_Observation]] = defaultdict(list)
    for row in _measured(points):
        key = (row.get("server_kind") or "unknown", row["accelerator"])
        groups[key].append(_observe(row, model or get_model(row["model_preset"]), catalog))
    ordered = sorted(groups.items(), key=lambda item: item[0])
    return Calibration(groups=[_fit_group(kind, accelerator, obs) for (kind, accelerator), obs in ordered])


def _measured(points: pa.Table | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = points.to_pylist() if isinstance(points, pa.Table) else list(points)
    return [
        row for row in rows
        if row.get("source", "measured") != "predicted"
        and row.get("status", "ok") == "ok"
        and (_positive(row.get("ttft_p50_ms")) or _positive(row.get("tpot_p50_ms")))
    ]


def _positive(value: Any) -> bool:
    return value is not None and value > 0


def _observe(row: Mapping[str, Any], model: ModelArch, catalog: Catalog) -> _Observation:
    model_dtype = normalize_dtype(row.get("model_dtype") or "bf16")
    terms = roofline_terms(
        model,
        catalog.get(row["accelerator"]),
        int(row.get("accelerator_count") or 1),
        int(row["batch_size"]),
        int(row["input_tokens"]),
        int(row["output_tokens"]),
        weight_dtype=weight_dtype_for(row.get("quantization") or "none", model_dtype),
        activation_dtype=model_dtype if model_dtype in _ACTIVATION_DTYPES else "bf16",
    )
    ttft, tpot = row.get("ttft_p50_ms"), row.get("tpot_p50_ms")
    return _Observation(terms, ttft / 1e3 if _positive(ttft) else None, tpot / 1e3 if _positive(tpot) else None)


def _fit_group(server_kind: str, accelerator: str, observations: list[_Observation]) -> CalibrationGroup:
    ttft = [o for o in observations if o.ttft_s is not None]
    tpot = [o for o in observations if o.tpot_s is not None]
    # Log roofline terms per metric: column 0 compute, column 1 memory; and log measured values.
    ttft_terms = np.log([[o.terms.prefill_compute_s, o.terms.prefill_memory_s] for o in ttft]).reshape(-1, 2)
    tpot_terms = np.log([[o.terms.decode_compute_s, o.terms.decode_memory_s] for o in tpot]).reshape(-1, 2)
    ttft_measured = np.log([o.ttft_s for o in ttft])
    tpot_measured = np.log([o.tpot_s for o in tpot])

    def loss(log_flops: float, log_bandwidth: np.ndarray) -> np.ndarray:
        total = _PULL_TO_ONE * (log_flops**2 + log_bandwidth**2)
        for terms, measured in ((ttft_terms, ttft_measured), (tpot_terms, tpot_measured)):
            predicted = np.maximum(terms[:, 0] - log_flops, terms[:, 1] - log_bandwidth[:, None])
            total = total + ((predicted - measured) ** 2).sum(axis=1)
        return total

    log_flops, log_bandwidth = _minimise(loss)
    fitted = Efficiency(flops_efficiency=float(np.exp(log_flops)), bandwidth_efficiency=float(np.exp(log_bandwidth)))
    return CalibrationGroup(
        server_kind=server_kind,
        accelerator=accelerator,
        points=len(observations),
        efficiency=fitted,
        ttft_mape_before=_mape([o.terms.prefill_s(Efficiency()) for o in ttft], [o.ttft_s for o in ttft]),
        ttft_mape_after=_mape([o.terms.prefill_s(fitted) for o in ttft], [o.ttft_s for o in ttft]),
        tpot_mape_before=_mape([o.terms.decode_step_s(Efficiency()) for o in tpot], [o.tpot_s for o in tpot]),
        tpot_mape_after=_mape([o.terms.decode_step_s(fitted) for o in tpot], [o.tpot_s for o in tpot]),
    )


def _minimise(
    loss: Callable[[float, np.ndarray], np.ndarray], rounds: int = 7, points: int = 81
) -> tuple[float, float]:
    """Coarse-to-fine grid search of loss(x, ys) over the log-efficiency square; returns the best (x, y)."""
    x_grid = y_grid = np.linspace(*_LOG_RANGE, points)
    best = (0.0, 0.0)
    for _ in range(rounds):
        values = np.array([loss(float(x), y_grid) for x in x_grid])
        i, j = np.unravel_index(np.argmin(values), values.shape)
        best = (float(x_grid[i]), float(y_grid[j]))
        half_width = 4 * (x_grid[1] - x_grid[0])  # zoom in on +-4 steps around the best cell
        x_grid = np.linspace(best[0] - half_width, best[0] + half_width, points // 2 + 1)
        y_grid = np.linspace(best[1] - half_width, best[1] + half_width, points // 2 + 1)
    return best


def _mape(predicted: list[float], measured: list[float]) -> float | None:
    """Mean absolute percentage error, in percent; None without measurements."""
    if not measured:
        return None
    p, m = np.asarray(predicted), np.asarray(measured)
    return float(np.mean(np.abs(p - m) / m) * 100)
