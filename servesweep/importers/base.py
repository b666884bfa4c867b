"""What every importer shares: the parsed result (points, requests, notes), reading the file, statistics.

An importer maps one peer tool's result file onto the lake's rows. It keeps the file's own numbers where they
mean what the lake's column means, converts units and definitions where they differ (each importer's module
doc says which), and leaves a column null when the file does not have it: nothing is estimated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from servesweep.lake.schema import STATS

STATS_KEYS = STATS  # the lake's statistics of a latency metric: p50, p90, p95, p99, mean
# The lake's percentiles (schema.STATS without the mean), as fractions of 100.
PERCENTILES = {stat: float(stat[1:]) for stat in STATS if stat.startswith("p")}
DEPLOYMENT_ID = "imported"


class ImportFailed(ValueError):
    """A file the importer cannot read as its format; the message is one line naming the file and the reason."""


@dataclass
class Imported:
    """One file's rows: points (and requests where it has per-request data), and how they were made."""

    tool: str
    points: list[dict[str, Any]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model_name: str | None = None
    started_at: datetime | None = None


def read_json(path: Path) -> Any:
    """The file's JSON; ImportFailed (one line) when it is missing, unreadable or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ImportFailed(f"{path}: cannot read it: {getattr(error, 'strerror', None) or error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFailed(f"{path}: not JSON ({error.msg} at line {error.lineno})") from error


def need(mapping: Any, key: str, path: Path, what: str) -> Any:
    """mapping[key], or ImportFailed saying the file is not `what`."""
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise ImportFailed(f"{path}: not {what}: no {key!r} field")
    return mapping[key]


def as_dict(value: Any) -> dict[str, Any]:
    """An optional JSON object: itself, or empty when absent or not an object."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def number(value: Any, path: Path, name: str) -> float | None:
    """A JSON number as float (None stays None); ImportFailed for anything else (a string, a list)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportFailed(f"{path}: {name} is not a number: {str(value)[:60]!r}")
    return float(value)


def scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def stats_ms(values_ms: Sequence[float], metric: str) -> dict[str, float | None]:
    """{metric}_{p50..p99,mean}_ms of per-request (or per-gap) values, numpy's linear percentiles, like the lake's
    own points; all null for no values."""
    array = np.asarray(values_ms, dtype=np.float64)
    array = array[np.isfinite(array)]
    if not len(array):
        return {f"{metric}_{stat}_ms": None for stat in STATS}
    result: dict[str, float | None] = {f"{metric}_{stat}_ms": float(np.percentile(array, q))
                                       for stat, q in PERCENTILES.items()}
    result[f"{metric}_mean_ms"] = float(array.mean())
    return result


def first_present(rows: Iterable[dict[str, Any]], key: str) -> Any:
    return next((row[key] for row in rows if row.get(key) is not None), None)


def unix_time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def point_row(tool: str, point_id: str, **columns: Any) -> dict[str, Any]:
    """A points row of an imported file: measured (by the peer tool), with the tool recorded."""
    return {"point_id": point_id, "deployment_id": DEPLOYMENT_ID, "source": "measured", "imported_from": tool,
            **columns}


def status_of(succeeded: int, failed: int) -> str:
    """The lake's point status from the file's counts."""
    if succeeded == 0:
        return "failed"
    return "partial" if failed else "ok"
