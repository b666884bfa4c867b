"""Write lake step: publish a run's tables to the lake (local directory or gs://), replacing the run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from servesweep.lake.store import to_table, write_run


def write_lake(lake_uri: str, run_id: str, tables: dict[str, pa.Table]) -> dict[str, int]:
    """Rows written per table. Rerunning the same run id replaces its partition, never duplicates it."""
    return write_run(lake_uri, run_id, tables)


def with_accuracy(tables: dict[str, pa.Table], score_files: Sequence[str | Path]) -> dict[str, pa.Table]:
    """`tables` plus the accuracy steps' rows (one Parquet file per deployment, most of them empty)."""
    scored = [pq.read_table(path) for path in score_files]
    return tables | {"accuracy": pa.concat_tables([to_table("accuracy", t) for t in scored]) if scored
                     else to_table("accuracy", [])}
