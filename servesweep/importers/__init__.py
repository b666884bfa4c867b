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
from typing import Any, get_args

import pyarrow as pa

from servesweep.importers import guidellm, inference_perf, vllm_bench
from servesweep.importers.base import Imported, ImportFailed, read_json

__all__ = ["FORMATS", "ImportFailed", "ImportResult", "Stated", "import_file"]

Parser = Callable[[Any, Path], Imported]
FORMATS: dict[str, Parser] = {vllm_bench.TOOL: vllm_bench.parse, guidellm.TOOL: guidellm.parse,
                              inference_perf.TOOL: inference_perf.parse}
# Formats whose input may be a results folder rather than one JSON file.
_FOLDERS: dict[str, Callable[[Path], Any]] = {inference_perf.TOOL: inference_perf.read}


@dataclass(frozen=True)
class Stated:
    """What the importer is told about the measurement that the file itself does not record (the hardware, the
    server); recorded in the run's notes as stated, so the imported run is costed and compared like a measured
    one. None: not stated, left null."""

    accelerator: str | None = None
    accelerator_count: int | None = None
    server_kind: str | None = None
    quantization: str | None = None

    def checked(self) -> Stated:
        """ImportFailed for a name servesweep does not know (a typo would make a config of its own)."""
        from servesweep.catalog import load_catalog
        from servesweep.quantization import Quantization
        from servesweep.spec import ServerKind

        known = {"accelerator": set(load_catalog().accelerators) if self.accelerator else set(),
                 "server_kind": set(get_args(ServerKind)), "quantization": _literals(Quantization)}
        for name, allowed in known.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ImportFailed(f"--{name.replace('_', '-')} {value!r}: one of {', '.join(sorted(allowed))}")
        if self.accelerator_count is not None and self.accelerator_count < 1:
            raise ImportFailed(f"--accelerator-count must be >= 1, got {self.accelerator_count}")
        return self

    def columns(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}


def _literals(kind: Any) -> set[str]:
    """Every string of a (nested) Literal."""
    return {value for arg in get_args(kind) for value in (_literals(arg) if get_args(arg) else {arg})}


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


def import_file(fmt: str, path: Path, lake_uri: str, run_id: str | None = None,
                stated: Stated | None = None) -> ImportResult:
    """Parse `path` and write it to the lake as one run (one commit), with the `stated` facts the file lacks;
    refuses a run id the lake already has."""
    facts = (stated or Stated()).checked().columns()
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
    if facts:
        notes.append("stated at import, not in the file: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    points = [dict(p, **facts, run_id=run_id, started_at=p.get("started_at") or imported.started_at)
              for p in imported.points]
    requests = [dict(r, run_id=run_id) for r in imported.requests]
    run = {"run_id": run_id, "run_name": path.stem, "started_at": imported.started_at, "spec_hash": _digest(path),
           "notes": "; ".join(notes)}
    try:
        tables = {"points": to_table("points", points), "requests": to_table("requests", requests),
                  "runs": to_table("runs", [run])}
    except (pa.ArrowException, LakeError) as error:  # a value of the wrong type for its column
        raise ImportFailed(f"{path}: a value does not fit the lake's column: {str(error).splitlines()[0]}") from error
    return ImportResult(run_id, write_run(lake_uri, run_id, tables), notes)

