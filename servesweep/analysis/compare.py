"""`servesweep compare A B`: what changed between two runs (or two configurations) and which of the measured
differences lie outside the noise.

Two sides, each a run id or a configuration id (point_costs.config_id). What differs: the runs' fingerprints
(the `runs` table: server version, GPU, driver...), the specs' fields (runs.spec_json, flattened), and for
two configurations the parts of their measured identity (point_costs.config_key). Then, per load present on
both sides (batch size, rate, stage), output throughput and p50/p99 TTFT and TPOT: B - A, and a verdict. A
difference is "outside the noise" when the two points' 95 % intervals (points.*_ci_*) do not overlap, "within
the noise" when they do (a conservative test: disjoint 95 % intervals differ at well below the 5 % level), and
"unqualified" when either side has no interval (one repeat, or a lake older than schema v4).

Two runs pair their points by what the runs do not differ in: the parts of the configuration identity that are
the same across each run's points and differ between the runs (the quantization of an fp8 run against a bf16
one) are set aside, so a run's 128/128 series pairs with the other's 128/128 series.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from servesweep.analysis.views import connect, set_params

# (label, value column, interval low, interval high, unit, which way is better)
METRICS = (
    ("output throughput", "output_token_throughput", "output_token_throughput_ci_low",
     "output_token_throughput_ci_high", "tok/s", "higher"),
    ("p50 TTFT", "ttft_p50_ms", "ttft_p50_ci_low_ms", "ttft_p50_ci_high_ms", "ms", "lower"),
    ("p99 TTFT", "ttft_p99_ms", "ttft_p99_ci_low_ms", "ttft_p99_ci_high_ms", "ms", "lower"),
    ("p50 TPOT", "tpot_p50_ms", "tpot_p50_ci_low_ms", "tpot_p50_ci_high_ms", "ms", "lower"),
    ("p99 TPOT", "tpot_p99_ms", "tpot_p99_ci_low_ms", "tpot_p99_ci_high_ms", "ms", "lower"),
)
# The load a point was measured at within its configuration (point_costs' slot, less the configuration).
_LOAD = ("batch_size", "request_rate", "ramp_to_rate", "stage", "concurrency", "trace")
# Runs columns that are labels or always differ, not a fingerprint.
_NOT_FINGERPRINT = {"run_id", "schema_version", "run_name", "started_at", "spec_json", "notes"}
_NOT_SPEC = {"name", "run_id"}  # spec fields that name the run rather than configure it
OUTSIDE, WITHIN, UNQUALIFIED = "outside the noise", "within the noise", "unqualified"


class CompareError(ValueError):
    """The comparison cannot be made as asked (unknown id, a run against a configuration...)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Difference(_Strict):
    """One field whose value differs between the two sides."""

    field: str = Field(..., description="'runs.<column>', 'spec.<dotted path>' or 'config.<identity part>'.")
    a: str = Field(..., description="Side A's value(s), ', '-joined when a side spans several runs; '-': none.")
    b: str = Field(..., description="Side B's value(s).")


class MetricDelta(_Strict):
    """One metric at one load present on both sides."""

    series: str = Field(..., description="What the paired points have in common (workload shape, sweep mode).")
    batch_size: int = Field(..., description="The load both points were measured at (with rate and stage).")
    load: str = Field(..., description="The load in words: batch, and rate or stage where set.")
    metric: str = Field(..., description="output throughput, p50/p99 TTFT or TPOT.")
    unit: str = Field(..., description="tok/s or ms.")
    a: float | None = Field(..., description="Side A's value.")
    b: float | None = Field(..., description="Side B's value.")
    change: float | None = Field(..., description="b - a.")
    change_fraction: float | None = Field(..., description="(b - a) / a; null when a is 0 or missing.")
    a_interval: tuple[float, float] | None = Field(..., description="A's 95 % interval; null: not measured.")
    b_interval: tuple[float, float] | None = Field(..., description="B's 95 % interval.")
    verdict: str = Field(..., description="'outside the noise' (intervals disjoint), 'within the noise' (they "
                                          "overlap) or 'unqualified' (an interval is missing).")
    direction: str | None = Field(..., description="'better' or 'worse' for B, outside the noise; else null.")
    caveats: list[str] = Field(default_factory=list, description="noisy repeats, p99 from few requests.")
    a_point: str = Field(..., description="A's run_id/point_id.")
    b_point: str = Field(..., description="B's run_id/point_id.")


class Comparison(_Strict):
    """`servesweep compare`'s answer (its --output json)."""

    kind: str = Field(..., description="'runs' or 'configs'.")
    a: str = Field(..., description="Side A: a run id or a config id.")
    b: str = Field(..., description="Side B.")
    a_label: str = Field(..., description="What side A is, in words.")
    b_label: str = Field(..., description="What side B is.")
    a_runs: list[str] = Field(..., description="Runs whose points make up side A.")
    b_runs: list[str] = Field(..., description="Runs whose points make up side B.")
    differences: list[Difference] = Field(..., description="Fingerprint, spec and identity fields that differ.")
    deltas: list[MetricDelta] = Field(..., description="Per load on both sides, per metric.")
    only_a: list[str] = Field(..., description="Loads measured by A alone ('series batch N').")
    only_b: list[str] = Field(..., description="Loads measured by B alone.")
    notes: list[str] = Field(default_factory=list)

    def outside_noise(self) -> list[MetricDelta]:
        return [d for d in self.deltas if d.verdict == OUTSIDE]


def compare(lake_uri: str, a: str, b: str) -> Comparison:
    """Compare two runs, or two configurations, of the lake."""
    if a == b:
        raise CompareError(f"compare needs two different runs or configurations; got {a!r} twice")
    connection = connect(lake_uri)
    try:
        runs = [row[0] for row in connection.sql("SELECT DISTINCT run_id FROM points ORDER BY 1").fetchall()]
        configs = dict(connection.sql("SELECT DISTINCT config_id, config_label FROM point_costs").fetchall())
        kinds = [_kind(side, runs, configs) for side in (a, b)]
        if kinds[0] != kinds[1]:
            raise CompareError(f"{a!r} is a {kinds[0][:-1]} and {b!r} a {kinds[1][:-1]}: compare two runs or two "
                               "configurations")
        if kinds[0] == "runs":
            return _compare_runs(connection, a, b)
        return _compare_configs(connection, a, b, configs)
    finally:
        connection.close()


def _kind(side: str, runs: Sequence[str], configs: dict[str, str]) -> str:
    if side in runs:
        return "runs"
    if side in configs:
        return "configs"
    raise CompareError(f"{side!r} is neither a run nor a configuration of the lake; runs: {', '.join(runs) or 'none'}; "
                       "configuration ids: servesweep query \"SELECT DISTINCT config_id, config_label FROM "
                       "point_costs\"")


# --- the two kinds ---------------------------------------------------------------------------------------------

def _compare_runs(connection: duckdb.DuckDBPyConnection, a: str, b: str) -> Comparison:
    sides = []
    for run in (a, b):
        set_params(connection, run_ids=[run])
        sides.append(_measured_points(connection, "true"))
    set_params(connection)
    common = [_common_parts(rows) for rows in sides]
    run_level = _differing_parts(*common)
    differences = [Difference(field=f"config.{name}", a=common[0][name], b=common[1][name])
                   for name in common[0] if name in run_level]
    differences += _fingerprint_differences(connection, [a], [b])
    pairs, only_a, only_b = _pair(sides[0], sides[1], lambda row: _series_key(row, run_level))
    notes = _empty_notes(sides, (a, b)) + _unfingerprinted(connection, (a, b))
    return Comparison(kind="runs", a=a, b=b, a_label=f"run {a}", b_label=f"run {b}", a_runs=[a], b_runs=[b],
                      differences=differences, deltas=_deltas(pairs), only_a=only_a, only_b=only_b, notes=notes)


def _compare_configs(connection: duckdb.DuckDBPyConnection, a: str, b: str, configs: dict[str, str]) -> Comparison:
    sides = [_measured_points(connection, f"config_id = '{side}'") for side in (a, b)]
    if not all(sides):
        raise CompareError("a configuration of planner predictions has nothing measured to compare")
    keys = [_parts(rows[0]["config_key"]) for rows in sides]
    differences = [Difference(field=f"config.{name}", a=keys[0].get(name, "-"), b=keys[1].get(name, "-"))
                   for name in _ordered_union(keys) if keys[0].get(name) != keys[1].get(name)]
    side_runs = [sorted({row["run_id"] for row in rows}) for rows in sides]
    differences += _fingerprint_differences(connection, *side_runs)
    pairs, only_a, only_b = _pair(sides[0], sides[1], lambda row: "")
    return Comparison(kind="configs", a=a, b=b, a_label=configs[a], b_label=configs[b], a_runs=side_runs[0],
                      b_runs=side_runs[1], differences=differences, deltas=_deltas(pairs), only_a=only_a,
                      only_b=only_b, notes=_unfingerprinted(connection, sorted({*side_runs[0], *side_runs[1]})))


def _measured_points(connection: duckdb.DuckDBPyConnection, where: str) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM point_costs WHERE source = 'measured' AND {where} ORDER BY config_key, batch_size, point_id"
    rows: list[dict[str, Any]] = connection.sql(sql).to_arrow_table().to_pylist()
    return rows


def _empty_notes(sides: Sequence[list[dict[str, Any]]], names: Sequence[str]) -> list[str]:
    return [f"run {name} has no measured point with status ok or partial" for rows, name in zip(sides, names,
                                                                                               strict=True) if not rows]


def _unfingerprinted(connection: duckdb.DuckDBPyConnection, runs: Sequence[str]) -> list[str]:
    known = {row[0] for row in connection.sql("SELECT run_id FROM runs").fetchall()}
    return [f"run {run} has no fingerprint (no runs row: written before lake schema v4), so only its points' "
            "identity is compared" for run in runs if run not in known]


# --- identity parts ---------------------------------------------------------------------------------------------

def _parts(config_key: str) -> dict[str, str]:
    """point_costs.config_key ('model x | quantization y | ...') as {part name: value}."""
    parts = (part.partition(" ") for part in config_key.split(" | "))
    return {name: value for name, _, value in parts}


def _common_parts(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The identity parts every point of a run shares (its run-level settings)."""
    parts = [_parts(row["config_key"]) for row in rows]
    if not parts:
        return {}
    return {name: value for name, value in parts[0].items() if all(p.get(name) == value for p in parts)}


def _differing_parts(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {name for name in a.keys() & b.keys() if a[name] != b[name]}


def _series_key(row: dict[str, Any], set_aside: set[str]) -> str:
    return " | ".join(f"{name} {value}" for name, value in _parts(row["config_key"]).items() if name not in set_aside)


def _ordered_union(dicts: Iterable[dict[str, str]]) -> list[str]:
    names: dict[str, None] = {}
    for mapping in dicts:
        names.update(dict.fromkeys(mapping))
    return list(names)


# --- fingerprints -------------------------------------------------------------------------------------------------

def _fingerprint_differences(connection: duckdb.DuckDBPyConnection, a_runs: Sequence[str],
                             b_runs: Sequence[str]) -> list[Difference]:
    table = connection.sql("SELECT * FROM runs").to_arrow_table()
    rows = {row["run_id"]: row for row in table.to_pylist()}
    sides = [[rows[r] for r in runs if r in rows] for runs in (a_runs, b_runs)]
    differences = []
    for column in table.column_names:
        if column in _NOT_FINGERPRINT:
            continue
        values = [_values(row.get(column) for row in side) for side in sides]
        if values[0] != values[1]:
            differences.append(Difference(field=f"runs.{column}", a=values[0], b=values[1]))
    specs = [[_flatten(json.loads(row["spec_json"])) for row in side if row.get("spec_json")] for side in sides]
    for path in _ordered_union(spec for side in specs for spec in side):
        if path.split(".")[0] in _NOT_SPEC:
            continue
        values = [_values(spec.get(path) for spec in side) for side in specs]
        if values[0] != values[1]:
            differences.append(Difference(field=f"spec.{path}", a=values[0], b=values[1]))
    return differences


def _values(values: Iterable[object]) -> str:
    texts = sorted({"-" if value is None else str(value) for value in values})
    return ", ".join(texts) or "-"


def _flatten(value: object, prefix: str = "") -> dict[str, str]:
    """A spec's JSON as {dotted path: JSON text of the leaf}; lists are leaves."""
    if isinstance(value, dict) and value:
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): json.dumps(value, sort_keys=True)}


# --- per load -----------------------------------------------------------------------------------------------------

Pair = tuple[str, dict[str, Any], dict[str, Any]]


def _load_key(row: dict[str, Any]) -> tuple[object, ...]:
    return tuple(row.get(column) for column in _LOAD)


def _series_label(row: dict[str, Any]) -> str:
    workload = f" {row['workload_name']}" if row.get("workload_name") else ""
    return f"{row['input_tokens']}/{row['output_tokens']}{workload} {row['sweep_mode']}"


def _load_text(row: dict[str, Any]) -> str:
    extra = [f"{name} {row[name]:g}" for name in ("request_rate", "ramp_to_rate") if row.get(name) is not None]
    extra += [f"stage {row['stage']}"] if row.get("stage") is not None else []
    return " ".join([f"batch {row['batch_size']}", *extra])


def _pair(a_rows: Sequence[dict[str, Any]], b_rows: Sequence[dict[str, Any]],
          series: Any) -> tuple[list[Pair], list[str], list[str]]:
    """Points of A and B at the same series and load; the loads only one side has, in words."""
    a_index = {(series(row), _load_key(row)): row for row in a_rows}
    b_index = {(series(row), _load_key(row)): row for row in b_rows}
    pairs = [(_series_label(row), row, b_index[key]) for key, row in a_index.items() if key in b_index]
    pairs.sort(key=lambda pair: (pair[0], pair[1]["batch_size"], _load_text(pair[1])))
    only_a = sorted(f"{_series_label(r)} {_load_text(r)}" for key, r in a_index.items() if key not in b_index)
    only_b = sorted(f"{_series_label(r)} {_load_text(r)}" for key, r in b_index.items() if key not in a_index)
    return pairs, only_a, only_b


def _deltas(pairs: Sequence[Pair]) -> list[MetricDelta]:
    return [_delta(label, a, b, metric) for label, a, b in pairs for metric in METRICS]


def _interval(row: dict[str, Any], low: str, high: str) -> tuple[float, float] | None:
    lo, hi = row.get(low), row.get(high)
    return None if lo is None or hi is None else (float(lo), float(hi))


def _delta(series: str, a: dict[str, Any], b: dict[str, Any], metric: tuple[str, ...]) -> MetricDelta:
    name, column, low, high, unit, better = metric
    va, vb = a.get(column), b.get(column)
    ia, ib = _interval(a, low, high), _interval(b, low, high)
    change = None if va is None or vb is None else vb - va
    verdict, direction = verdict_of(va, vb, ia, ib, better)
    caveats = [f"{side} repeats disagree (noisy)" for side, row in (("A", a), ("B", b)) if row.get("noisy")]
    if name.startswith("p99"):
        caveats += [f"{side} p99 from fewer than 100 requests" for side, row in (("A", a), ("B", b))
                    if row.get("p99_few_requests")]
    return MetricDelta(
        series=series, batch_size=a["batch_size"], load=_load_text(a), metric=name, unit=unit, a=va, b=vb,
        change=change, change_fraction=change / va if change is not None and va else None, a_interval=ia,
        b_interval=ib, verdict=verdict, direction=direction, caveats=caveats,
        a_point=f"{a['run_id']}/{a['point_id']}", b_point=f"{b['run_id']}/{b['point_id']}")


def verdict_of(a: float | None, b: float | None, a_interval: tuple[float, float] | None,
               b_interval: tuple[float, float] | None, better: str) -> tuple[str, str | None]:
    """(verdict, direction for B): disjoint 95 % intervals are outside the noise; a missing one, unqualified."""
    if a is None or b is None or a_interval is None or b_interval is None:
        return UNQUALIFIED, None
    if a_interval[0] <= b_interval[1] and b_interval[0] <= a_interval[1]:
        return WITHIN, None
    higher = b_interval[0] > a_interval[1]
    return OUTSIDE, "better" if higher == (better == "higher") else "worse"


# --- as text ------------------------------------------------------------------------------------------------------

def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _with_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    if interval is None:
        return _number(value)
    return f"{_number(value)} ({_number(interval[0])}-{_number(interval[1])})"


def verdict_text(delta: MetricDelta) -> str:
    """'outside the noise (B better)', 'within the noise' or 'unqualified: no 95 % interval', with caveats."""
    if delta.verdict == OUTSIDE:
        text = f"{OUTSIDE} (B {delta.direction})"
    elif delta.verdict == UNQUALIFIED:
        text = f"{UNQUALIFIED}: no 95 % interval" if delta.a is not None and delta.b is not None else \
            f"{UNQUALIFIED}: not measured on both sides"
    else:
        text = WITHIN
    return "; ".join([text, *delta.caveats])


def delta_rows(comparison: Comparison) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The per-load table: headers and rows of text."""
    headers: tuple[str, ...] = ("series", "load", "metric", "A (95 % CI)", "B (95 % CI)", "B - A", "verdict")
    rows: list[tuple[str, ...]] = []
    for d in comparison.deltas:
        change = "-" if d.change is None else f"{d.change:+,.4g} {d.unit}" + (
            f" ({d.change_fraction:+.1%})" if d.change_fraction is not None else "")
        rows.append((d.series, d.load, d.metric, _with_interval(d.a, d.a_interval), _with_interval(d.b, d.b_interval),
                     change, verdict_text(d)))
    return headers, rows


def summary(comparison: Comparison) -> str:
    """One sentence: how many differences lie outside the noise, and how many could not be judged."""
    outside = comparison.outside_noise()
    unqualified = [d for d in comparison.deltas if d.verdict == UNQUALIFIED]
    better = sum(d.direction == "better" for d in outside)
    text = (f"{len(comparison.deltas)} metric(s) at {len({(d.series, d.load) for d in comparison.deltas})} load(s) on "
            f"both sides: {len(outside)} outside the noise ({better} better for B, {len(outside) - better} worse), "
            f"{len(comparison.deltas) - len(outside) - len(unqualified)} within it, {len(unqualified)} unqualified")
    return text + (" (no 95 % intervals: measure with sweep.repeats >= 2)" if unqualified else "")
