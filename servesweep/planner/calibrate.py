"""Calibration: fit per-(server_kind, accelerator) serving factors from measured points.

Each measured point's TTFT, TPOT and round length (E2E; throughput = batch x output / E2E) are compared
with the closed-loop round model of ``servesweep.planner.roofline`` (mean TTFT and TPOT when the row has
them, else p50). The factors per group: ``flops_efficiency`` and ``bandwidth_efficiency`` (fractions of
the peaks) and the fixed costs of ``OVERHEADS``: per engine step, per layer per step (a deeper model's
higher floor), per sequence per decode step, per request before its prefill, and per request admitted (a
burst's serial front end). For given efficiencies every prediction is linear in the fixed costs, so
they are solved exactly (non-negative least squares on relative errors) inside a coarse-to-fine grid
search over the efficiencies in log space: deterministic, no optimiser to tune. The server's prefill
chunk (vLLM's max_num_batched_tokens) is an input, not fitted. A tiny pull towards 1.0 settles an
efficiency the data cannot identify (say, no compute-bound point) on the roofline value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from servesweep.catalog import Catalog, load_catalog
from servesweep.planner.memory import normalize_dtype
from servesweep.planner.models import ModelArch, get_model
from servesweep.planner.roofline import Efficiency, RooflineTerms, roofline_terms, weight_dtype_for

# Efficiencies searched: 0.1 % .. 100 % of peak. A fraction above 1 would be a faster GPU than the spec sheet's;
# where the round model misses a cost, the fit must show it as error, not as bandwidth the GPU does not have.
_LOG_RANGE = (float(np.log(1e-3)), 0.0)
_PULL_TO_ONE = 1e-6
_ACTIVATION_DTYPES = {"fp32", "bf16", "fp16"}
# The fixed costs calibrate fits (Efficiency fields), in the order _Round.coefficients gives their columns,
# with each field's unit in seconds.
OVERHEADS = ("step_overhead_ms", "request_overhead_ms", "request_admission_ms", "layer_overhead_us",
             "sequence_overhead_us")
_UNIT_S = {"ms": 1e-3, "us": 1e-6}
# The default: on the H200 lake the per-layer and per-sequence terms did not lower every held-out error
# (benchmarks/results/h200/calibration.md, "Fixed-cost terms tried"), so they are fitted only when asked.
STEP_REQUEST_ADMISSION = OVERHEADS[:3]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalibrationGroup(_Strict):
    server_kind: str
    accelerator: str
    weight_dtype: str | None = None  # None: fitted over every weight dtype of the pair
    points: int
    efficiency: Efficiency
    ttft_mape_before: float | None  # percent, at efficiency 1 (the raw roofline)
    ttft_mape_after: float | None
    tpot_mape_before: float | None
    tpot_mape_after: float | None
    throughput_mape_before: float | None = None
    throughput_mape_after: float | None = None


class Calibration(_Strict):
    groups: list[CalibrationGroup]

    def efficiency_for(self, server_kind: str, accelerator: str, weight_dtype: str | None = None) -> Efficiency:
        """The fitted factors for a server, accelerator and weight dtype (kernels differ per dtype), else
        those fitted over all dtypes of the pair; the raw roofline (1.0) when never measured."""
        dtype = normalize_dtype(weight_dtype) if weight_dtype else None
        pair = [g for g in self.groups if (g.server_kind, g.accelerator) == (server_kind, accelerator)]
        for group in sorted(pair, key=lambda g: g.weight_dtype is None):
            if group.weight_dtype in (dtype, None):
                return group.efficiency
        return Efficiency()


@dataclass(frozen=True)
class _Observation:
    """One measured point reduced to its roofline terms and measured latencies (seconds)."""

    terms: RooflineTerms
    ttft_s: float | None
    tpot_s: float | None
    e2e_s: float | None = None  # one round: batch x output / output throughput


def calibrate(
    points: pa.Table | Iterable[Mapping[str, Any]],
    model: ModelArch | None = None,
    catalog: Catalog | None = None,
    prefill_chunk_tokens: Mapping[tuple[str, str], int] | None = None,
    fit_overheads: bool = True,
    by_weight_dtype: bool = False,
    overheads: tuple[str, ...] = STEP_REQUEST_ADMISSION,
) -> Calibration:
    """Fit serving factors per (server_kind, accelerator) and report MAPE before and after.

    `points` are ``points`` rows (a pyarrow Table or dicts) with accelerator, server_kind, batch_size,
    input_tokens, output_tokens and TTFT/TPOT (``*_mean_ms``, else ``*_p50_ms``); output_token_throughput,
    accelerator_count, quantization and model_dtype are used when present. Predicted and failed rows
    are skipped. Without `model`, each row's ``model_preset`` is looked up (model catalog, then spec
    presets). `prefill_chunk_tokens` gives a (server kind, accelerator) pair's prefill chunk;
    `fit_overheads=False` fits the two efficiencies alone (the pure roofline's factors); `overheads` names
    which of ``OVERHEADS`` to fit (the rest stay 0); `by_weight_dtype` fits each weight dtype of a pair on
    its own (bf16 and fp8 run different kernels).
    """
    unknown = set(overheads) - set(OVERHEADS)
    if unknown:
        raise ValueError(f"unknown overheads {sorted(unknown)}; choose from {', '.join(OVERHEADS)}")
    fitted = overheads if fit_overheads else ()
    catalog = catalog or load_catalog()
    chunks = dict(prefill_chunk_tokens or {})
    groups: dict[tuple[str, str, str], list[_Observation]] = defaultdict(list)
    for row in _measured(points):
        dtype = _weight_dtype(row) if by_weight_dtype else ""
        key = (row.get("server_kind") or "unknown", row["accelerator"], dtype)
        groups[key].append(_observe(row, model or get_model(row["model_preset"]), catalog))
    ordered = sorted(groups.items(), key=lambda item: item[0])
    return Calibration(groups=[
        _fit_group(kind, accelerator, obs, chunks.get((kind, accelerator)), fitted, dtype or None)
        for (kind, accelerator, dtype), obs in ordered
    ])


def _weight_dtype(row: Mapping[str, Any]) -> str:
    return weight_dtype_for(row.get("quantization") or "none", normalize_dtype(row.get("model_dtype") or "bf16"))


def _latency(row: Mapping[str, Any], metric: str) -> float | None:
    for stat in ("mean", "p50"):
        value = row.get(f"{metric}_{stat}_ms")
        if _positive(value):
            return value
    return None


def _measured(points: pa.Table | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = points.to_pylist() if isinstance(points, pa.Table) else list(points)
    return [
        row for row in rows
        if row.get("source", "measured") != "predicted"
        and row.get("status", "ok") == "ok"
        and (_latency(row, "ttft") or _latency(row, "tpot"))
    ]


def _positive(value: Any) -> TypeGuard[float]:
    return value is not None and value > 0


def observe_terms(row: Mapping[str, Any], model: ModelArch, catalog: Catalog) -> RooflineTerms:
    """The roofline terms of a ``points`` row's configuration."""
    model_dtype = normalize_dtype(row.get("model_dtype") or "bf16")
    return roofline_terms(
        model,
        catalog.get(row["accelerator"]),
        int(row.get("accelerator_count") or 1),
        int(row["batch_size"]),
        int(row["input_tokens"]),
        int(row["output_tokens"]),
        weight_dtype=weight_dtype_for(row.get("quantization") or "none", model_dtype),
        activation_dtype=model_dtype if model_dtype in _ACTIVATION_DTYPES else "bf16",
    )


def _observe(row: Mapping[str, Any], model: ModelArch, catalog: Catalog) -> _Observation:
    terms = observe_terms(row, model, catalog)
    ttft, tpot = _latency(row, "ttft"), _latency(row, "tpot")
    throughput = row.get("output_token_throughput")
    e2e = terms.batch_size * terms.output_tokens / throughput if _positive(throughput) else None
    return _Observation(terms, ttft / 1e3 if ttft else None, tpot / 1e3 if tpot else None, e2e)


class _Round:
    """Every observation's round, vectorised over (point, request) for the grid search.

    For efficiencies (f, b): a request's prefill is max(compute / f, memory / b) plus steps x (step
    overhead + layers x layer overhead), its position x admission and the request overhead, and a decode
    step adds batch x sequence overhead, so each metric is base(f, b) plus a linear term in each fixed cost.
    """

    def __init__(self, observations: list[_Observation], chunk: int | None) -> None:
        self.observations = observations
        owner, positions, steps = [], [], []
        for index, o in enumerate(observations):
            t = o.terms
            requests = np.arange(1, t.batch_size + 1)  # every request of the round, in arrival order
            owner.append(np.full(len(requests), index))
            positions.append(requests)
            steps.append(np.ceil(requests * t.input_tokens / chunk) if chunk else np.ones(len(requests)))
        self.owner = np.concatenate(owner)
        self.position = np.concatenate(positions).astype(float)
        sizes = np.concatenate([np.full(len(p), len(p)) for p in positions])
        self.share = self.position / sizes if chunk else np.ones(len(self.position))  # as RooflineTerms does
        self.steps = np.concatenate(steps)
        terms = [o.terms for o in observations]

        def pick(attr: str) -> np.ndarray:
            return np.array([getattr(t, attr) for t in terms])

        self.compute, self.weights = pick("prefill_compute_s"), pick("prefill_weights_s")
        self.kv = pick("prefill_memory_s") - self.weights
        self.decode_compute, self.decode_memory = pick("decode_compute_s"), pick("decode_memory_s")
        # Tensor-parallel all-reduces: fixed link time, no factor to fit (zero on one GPU).
        self.prefill_comm, self.decode_comm = pick("prefill_comm_s"), pick("decode_comm_s")
        self.comm_latency = pick("comm_latency_s")
        self.count = np.bincount(self.owner).astype(float)
        self.last = np.cumsum(self.count).astype(int) - 1  # index of each point's last request
        self.outputs = pick("output_tokens").astype(float)
        self.layers, self.batch = pick("layers").astype(float), pick("batch_size").astype(float)

    def coefficients(self, flops: float, bandwidth: float) -> dict[str, tuple[np.ndarray, ...]]:
        """Per metric: (base, then the coefficients of the fixed costs in ``OVERHEADS`` order, in seconds)."""
        o = self.owner
        prefill = np.maximum(self.share * self.compute[o] / flops,
                             (self.steps * self.weights[o] + self.share * self.kv[o]) / bandwidth)
        prefill = prefill + self.share * self.prefill_comm[o] + self.steps * self.comm_latency[o]
        count = self.count

        def mean(values: np.ndarray) -> np.ndarray:  # per point, over its requests
            result: np.ndarray = np.bincount(o, weights=values) / count
            return result

        step = np.maximum(self.decode_compute / flops, self.decode_memory / bandwidth)
        step = step + self.decode_comm + self.comm_latency
        last, last_steps, last_position = prefill[self.last], self.steps[self.last], self.position[self.last]
        decode_steps = np.maximum(self.outputs - 1, 1)
        ones = np.ones_like(step)
        steps = {  # engine steps each metric spans: they carry the per-step and per-layer costs
            "ttft": mean(self.steps),
            "tpot": 1 + (last_steps - mean(self.steps)) / decode_steps,
            "e2e": last_steps + self.outputs - 1,
        }
        return {
            "ttft": (mean(prefill), steps["ttft"], ones, mean(self.position), steps["ttft"] * self.layers,
                     0 * ones),
            "tpot": (step + (last - mean(prefill)) / decode_steps, steps["tpot"], 0 * ones,
                     (last_position - mean(self.position)) / decode_steps, steps["tpot"] * self.layers,
                     self.batch),
            "e2e": (last + (self.outputs - 1) * step, steps["e2e"], ones, last_position,
                    steps["e2e"] * self.layers, (self.outputs - 1) * self.batch),
        }


_METRICS = ("ttft", "tpot", "e2e")


def _fit_group(server_kind: str, accelerator: str, observations: list[_Observation], chunk: int | None = None,
               overheads: tuple[str, ...] = OVERHEADS, weight_dtype: str | None = None) -> CalibrationGroup:
    rounds = _Round(observations, chunk)
    columns = [OVERHEADS.index(name) for name in overheads]
    measured = {m: np.array([getattr(o, f"{m}_s") or np.nan for o in observations]) for m in _METRICS}

    def solve(flops: float, bandwidth: float) -> tuple[float, tuple[float, ...]]:
        rows, targets = [], []
        for metric, (base, *coefficients) in rounds.coefficients(flops, bandwidth).items():
            seen = ~np.isnan(measured[metric])
            scale = measured[metric][seen]
            rows.append(np.column_stack([coefficients[c][seen] for c in columns] or [0 * scale]) / scale[:, None])
            targets.append(1 - base[seen] / scale)
        a, y = np.vstack(rows), np.concatenate(targets)
        solution = _nonnegative_lstsq(a, y) if columns else np.zeros(a.shape[1])
        residual = a @ solution - y
        pull = _PULL_TO_ONE * (np.log(flops) ** 2 + np.log(bandwidth) ** 2)
        return float(residual @ residual + pull), tuple(float(x) for x in solution)

    def loss(log_flops: float, log_bandwidth: np.ndarray) -> np.ndarray:
        return np.array([solve(float(np.exp(log_flops)), float(np.exp(y)))[0] for y in log_bandwidth])

    log_flops, log_bandwidth = _minimise(loss, rounds=6, points=29)
    _, seconds = solve(float(np.exp(log_flops)), float(np.exp(log_bandwidth)))
    costs = {name: value / _UNIT_S[name.rsplit("_", 1)[1]] for name, value in zip(overheads, seconds, strict=False)}
    fitted = Efficiency(flops_efficiency=float(np.exp(log_flops)), bandwidth_efficiency=float(np.exp(log_bandwidth)),
                        prefill_chunk_tokens=chunk, **costs)
    before, after = _errors(observations, Efficiency()), _errors(observations, fitted)
    return CalibrationGroup(
        server_kind=server_kind,
        accelerator=accelerator,
        weight_dtype=weight_dtype,
        points=len(observations),
        efficiency=fitted,
        ttft_mape_before=before["ttft"], ttft_mape_after=after["ttft"],
        tpot_mape_before=before["tpot"], tpot_mape_after=after["tpot"],
        throughput_mape_before=before["e2e"], throughput_mape_after=after["e2e"],
    )


def _nonnegative_lstsq(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with non-negative unknowns: the best unconstrained solution over every subset of them
    (a handful of unknowns, so trying all 2^n supports is exact and cheap)."""
    n = a.shape[1]
    best, best_loss = np.zeros(n), float(y @ y)
    for support in range(1, 2**n):
        columns = [i for i in range(n) if support >> i & 1]
        solution = np.linalg.lstsq(a[:, columns], y, rcond=None)[0]
        if (solution < 0).any():
            continue
        x = np.zeros(n)
        x[columns] = solution
        loss = float(np.sum((a @ x - y) ** 2))
        # Strictly better beyond rounding: where two costs are interchangeable (one model depth: per-step and
        # per-layer), the smaller support, found first, keeps it all instead of an arbitrary split.
        if loss < best_loss * (1 - 1e-9):
            best, best_loss = x, loss
    return best


def _errors(observations: list[_Observation], efficiency: Efficiency) -> dict[str, float | None]:
    """MAPE (percent) of TTFT, TPOT and throughput (E2E) of the round model against the measurements."""
    predicted: dict[str, list[float]] = {m: [] for m in _METRICS}
    actual: dict[str, list[float]] = {m: [] for m in _METRICS}
    for o in observations:
        round_times = dict(zip(_METRICS, o.terms.round(efficiency), strict=True))
        for metric in _METRICS:
            value = getattr(o, f"{metric}_s")
            if value is not None:
                predicted[metric].append(round_times[metric])
                actual[metric].append(value)
    return {m: _mape(predicted[m], actual[m]) for m in _METRICS}


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
        x_grid = np.linspace(*_zoom(best[0], half_width), points // 2 + 1)
        y_grid = np.linspace(*_zoom(best[1], half_width), points // 2 + 1)
    return best


def _zoom(centre: float, half_width: float) -> tuple[float, float]:
    """The next grid's bounds around `centre`, kept inside the searched range."""
    return max(_LOG_RANGE[0], centre - half_width), min(_LOG_RANGE[1], centre + half_width)


def _mape(predicted: list[float], measured: list[float]) -> float | None:
    """Mean absolute percentage error, in percent; None without measurements."""
    if not measured:
        return None
    p, m = np.asarray(predicted), np.asarray(measured)
    return float(np.mean(np.abs(p - m) / m) * 100)


# --- the stored calibrations (servesweep/data/calibrations.yaml) -------------------------------------------

CALIBRATIONS_FILE = "data/calibrations.yaml"


class StoredCalibration(_Strict):
    """One fitted group as the catalog keeps it, with where its points came from."""

    server_kind: str
    accelerator: str
    weight_dtype: str | None = None
    efficiency: Efficiency
    source: str  # the lake and runs it was fitted on
    fitted_on: str  # date
    note: str = ""


class CalibrationCatalog(_Strict):
    calibrations_version: int
    calibrations: list[StoredCalibration]

    def calibration(self) -> Calibration:
        return Calibration(groups=[
            CalibrationGroup(server_kind=c.server_kind, accelerator=c.accelerator, weight_dtype=c.weight_dtype,
                             points=0, efficiency=c.efficiency,
                             ttft_mape_before=None, ttft_mape_after=None, tpot_mape_before=None,
                             tpot_mape_after=None)
            for c in self.calibrations
        ])


def load_calibrations(path: str | Path | None = None) -> Calibration:
    """The shipped (server kind, accelerator) calibrations; a pair never measured keeps the raw roofline."""
    from importlib import resources

    from servesweep.catalog import CatalogError
    from servesweep.yamlfile import read_mapping

    source = Path(path) if path else Path(str(resources.files("servesweep").joinpath(CALIBRATIONS_FILE)))
    try:
        return CalibrationCatalog.model_validate(read_mapping(source, "calibrations", CatalogError)).calibration()
    except ValidationError as error:
        raise CatalogError(f"invalid calibrations ({source}): {error.errors()[0]['msg']}") from None


class PointError(_Strict):
    """One measured point against the calibrated round model (percent errors: predicted vs measured)."""

    server_kind: str
    accelerator: str
    model_preset: str
    quantization: str
    batch_size: int
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None
    predicted_ttft_ms: float
    tpot_ms: float | None
    predicted_tpot_ms: float
    output_token_throughput: float | None
    predicted_output_token_throughput: float

    @staticmethod
    def _pct(predicted: float, measured: float | None) -> float | None:
        return None if not measured else (predicted - measured) / measured * 100

    @property
    def ttft_error(self) -> float | None:
        return self._pct(self.predicted_ttft_ms, self.ttft_ms)

    @property
    def tpot_error(self) -> float | None:
        return self._pct(self.predicted_tpot_ms, self.tpot_ms)

    @property
    def throughput_error(self) -> float | None:
        return self._pct(self.predicted_output_token_throughput, self.output_token_throughput)


def point_errors(points: pa.Table | Iterable[Mapping[str, Any]], calibration: Calibration,
                 model: ModelArch | None = None, catalog: Catalog | None = None) -> list[PointError]:
    """Each measured point next to what `calibration` predicts for it (held-out validation)."""
    catalog = catalog or load_catalog()
    errors = []
    for row in _measured(points):
        kind = row.get("server_kind") or "unknown"
        terms = observe_terms(row, model or get_model(row["model_preset"]), catalog)
        efficiency = calibration.efficiency_for(kind, row["accelerator"], _weight_dtype(row))
        ttft_s, tpot_s, e2e_s = terms.round(efficiency)
        errors.append(PointError(
            server_kind=kind, accelerator=row["accelerator"], model_preset=row.get("model_preset") or "",
            quantization=row.get("quantization") or "none",
            batch_size=terms.batch_size, input_tokens=terms.input_tokens, output_tokens=terms.output_tokens,
            ttft_ms=_latency(row, "ttft"), predicted_ttft_ms=ttft_s * 1e3,
            tpot_ms=_latency(row, "tpot"), predicted_tpot_ms=tpot_s * 1e3,
            output_token_throughput=row.get("output_token_throughput"),
            predicted_output_token_throughput=terms.batch_size * terms.output_tokens / e2e_s,
        ))
    return errors
