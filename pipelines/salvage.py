"""Publish what a cut-short local pipeline run measured (a timeout, Ctrl-C, a crashed step).

The sweep step saves its raw output after every point, so the run's task folders hold every
finished point even when collect-metrics and write-lake never ran. This does their work from those
folders: points that never ran are recorded as failed with reason "not run".
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.collect_metrics import collect_metrics
from components.quantize import read_quantize_result
from components.write_lake import write_lake
from servesweep.lake.store import to_table
from servesweep.platform.types import ModelInfo
from servesweep.spec import parse_spec


class NothingToSalvage(RuntimeError):
    pass


def latest_run_dir(pipeline_root: str | Path) -> Path:
    runs = sorted(Path(pipeline_root).glob("servesweep-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise NothingToSalvage(f"no pipeline run under {pipeline_root}")
    return runs[-1]


def salvage(run_dir: str | Path, lake_uri: str | None = None) -> tuple[str, str, dict[str, int]]:
    """(lake URI, run id, rows written per table) for the run in `run_dir` (a KFP local task folder)."""
    run = Path(run_dir)
    resolved = run / "resolve-spec" / "executor_output.json"
    model_file = run / "load-model" / "model" / "servesweep-model.json"
    if not resolved.exists() or not model_file.exists():
        raise NothingToSalvage(f"{run} has no resolved spec or model: the run stopped before the sweep")
    spec = parse_spec(json.loads(json.loads(resolved.read_text())["parameterValues"]["Output"]))
    raws = sorted(str(p.parent) for p in run.glob("for-loop-*/sweep/raw/manifest.json"))
    if not raws:
        raise NothingToSalvage(f"{run} has no sweep output")
    tables = collect_metrics(spec, ModelInfo.model_validate_json(model_file.read_text()), raws,
                             read_quantize_result(run / "quantize" / "quantized"))
    predicted = run / "plan" / "predicted"
    if predicted.exists():
        # to_table: a run from an older schema version gets the newer columns as nulls
        tables["points"] = pa.concat_tables([tables["points"], to_table("points", pq.read_table(predicted))])
    lake = lake_uri or spec.lake_uri
    return lake, spec.run_id, write_lake(lake, spec.run_id, tables)
