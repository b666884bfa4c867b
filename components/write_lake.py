"""Write lake step: publish a run's tables to the lake (local directory or gs://), replacing the run."""

from __future__ import annotations

import pyarrow as pa

from servesweep.lake.store import write_run


def write_lake(lake_uri: str, run_id: str, tables: dict[str, pa.Table]) -> dict[str, int]:
    """Rows written per table. Rerunning the same run id replaces its partition, never duplicates it."""
    return write_run(lake_uri, run_id, tables)
