"""Recorded arrivals to replay: JSONL lines {"timestamp": s, "input_tokens": n?, "output_tokens": n?} or a CSV
with a `timestamp` column (and optionally input_tokens, output_tokens). Offsets are relative to the first
arrival, sorted, scaled by time_scale."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servesweep.spec import TraceSpec


class TraceError(ValueError):
    """A trace file that cannot be replayed."""


@dataclass(frozen=True)
class Trace:
    offsets: list[float]
    lengths: list[tuple[int | None, int | None]]  # per arrival; None: the workload's own

    @property
    def mean_rate(self) -> float | None:
        span = self.offsets[-1] - self.offsets[0] if len(self.offsets) > 1 else 0.0
        return (len(self.offsets) - 1) / span if span > 0 else None


def read_trace(spec: TraceSpec) -> Trace:
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise TraceError(f"sweep.trace.path: {spec.path} does not exist where this step runs")
    rows = _csv(path) if path.suffix.lower() == ".csv" else _jsonl(path)
    if not rows:
        raise TraceError(f"sweep.trace.path: {spec.path} holds no arrivals")
    rows.sort(key=lambda row: row[0])
    rows = rows[: spec.max_requests] if spec.max_requests else rows
    start = rows[0][0]
    return Trace([(t - start) * spec.time_scale for t, _, _ in rows], [(i, o) for _, i, o in rows])


Row = tuple[float, int | None, int | None]


def _number(value: object, what: str, where: str, integer: bool = False) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value)) if integer else float(str(value))
    except (TypeError, ValueError):
        raise TraceError(f"{where}: {what} must be a number, got {value!r}") from None
    if number < (1 if integer else 0) or number != number:
        raise TraceError(f"{where}: {what} out of range: {value!r}")
    return number


def _row(item: Mapping[str, object], where: str) -> Row:
    timestamp = _number(item.get("timestamp"), "timestamp", where)
    if timestamp is None:
        raise TraceError(f"{where}: no timestamp")
    inputs = _number(item.get("input_tokens"), "input_tokens", where, integer=True)
    outputs = _number(item.get("output_tokens"), "output_tokens", where, integer=True)
    return float(timestamp), None if inputs is None else int(inputs), None if outputs is None else int(outputs)


def _jsonl(path: Path) -> list[Row]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise TraceError(f"{path}: line {number} is not JSON: {error}") from None
            if not isinstance(item, dict):
                raise TraceError(f"{path}: line {number} is not an object")
            rows.append(_row(item, f"{path}: line {number}"))
    return rows


def _csv(path: Path) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [_row(item, f"{path}: row {number}") for number, item in enumerate(csv.DictReader(handle), start=2)]
