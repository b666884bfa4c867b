"""Import peers' result files into the lake (`servesweep import FORMAT FILE`): one module per format.

Formats: vllm-bench (vllm_bench.py), guidellm (guidellm.py), inference-perf (inference_perf.py); each module's
doc says how the file's metrics map onto the lake's. An imported run is an ordinary run of the lake: its points
are `source = 'measured'` (by the peer tool), `imported_from` names the tool, and the runs row's notes say
which file and what was converted, so `servesweep query` and `servesweep report` show it beside the runs
servesweep measured. A file that cannot be read as its format writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from servesweep.importers import guidellm, inference_perf, vllm_bench
from servesweep.importers.base import Imported, ImportFailed, read_json

__all__ = ["FORMATS", "ImportFailed", "ImportResult", "import_file"]

Parser = Callable[[Any, Path], Imported]
FORMATS: dict[str, Parser] = {vllm_bench.TOOL: vllm_bench.parse, guidellm.TOOL: guidellm.parse,
                              inference_perf.TOOL: inference_perf.parse}
# Formats whose input may be a results folder rather than one JSON file.
_FOLDERS: dict[str, Callable[[Path], Any]] = {inference_perf.TOOL: inference_perf.read}


@dataclass(frozen=True)
class ImportResult:
    run_id: str
    rows: dict[str, int]
    notes: list[str]


def parse_file(fmt: str, path: Path) -> Imported:
    """The rows `path` holds in format `fmt`; ImportFailed (one line) for an unknown format or a bad file."""
    if fmt not in FORMATS:
        raise ImportFailed(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    data = _FOLDERS[fmt](path) if fmt in _FOLDERS else read_json(path)
    try:
        imported = FORMATS[fmt](data, path)
    except ImportFailed:
        raise
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as error:  # a field of another shape
        raise ImportFailed(f"{path}: not a {fmt} result as its source defines it "
                           f"({type(error).__name__}: {str(error)[:120]})") from error
    if not imported.points:
        raise ImportFailed(f"{path}: no benchmark results in it")
    return imported


def default_run_id(fmt: str, path: Path) -> str:
    """import-<format>-<first 10 hex of the file's sha256>: importing the same file twice is refused."""
    return f"import-{fmt}-{_digest(path)[:10]}"


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def import_file(fmt: str, path: Path, lake_uri: str, run_id: str | None = None) -> ImportResult:
    """Parse `path` and write it to the lake as one run (one commit); refuses a run id the lake already has."""
    from servesweep.lake.store import LakeError, open_lake, snapshot, to_table, write_run

    imported = parse_file(fmt, path)
    run_id = run_id or default_run_id(fmt, path)
    try:
        lake = snapshot(open_lake(lake_uri, must_exist=False))
    except LakeError as error:
        raise ImportFailed(str(error)) from error
    if run_id in {*lake.run_ids("points"), *lake.run_ids("runs")}:
        raise ImportFailed(f"run {run_id} is already in {lake_uri}: give another --run-id")
    notes = [f"imported:{fmt} from {path.name} (sha256 {_digest(path)[:16]})", *imported.notes]
    points = [dict(p, run_id=run_id, started_at=p.get("started_at") or imported.started_at) for p in imported.points]
    requests = [dict(r, run_id=run_id) for r in imported.requests]
    run = {"run_id": run_id, "run_name": path.stem, "started_at": imported.started_at, "spec_hash": _digest(path),
           "notes": "; ".join(notes)}
    try:
        tables = {"points": to_table("points", points), "requests": to_table("requests", requests),
                  "runs": to_table("runs", [run])}
    except (pa.ArrowException, LakeError) as error:  # a value of the wrong type for its column
        raise ImportFailed(f"{path}: a value does not fit the lake's column: {str(error).splitlines()[0]}") from error
    return ImportResult(run_id, write_run(lake_uri, run_id, tables), notes)

