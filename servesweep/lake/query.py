"""DuckDB over the lake: one view per table, named after it, spanning every run."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from servesweep.lake import store
from servesweep.lake.schema import SCHEMAS, TABLES


def connect(lake_uri: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with views `requests`, `points`, `server_metrics` over the lake.

    Tables are pyarrow datasets, so gs:// lakes need no DuckDB extension (none can be downloaded
    where the pipeline runs) and filters on run_id prune partitions.
    """
    connection = duckdb.connect()
    for table in TABLES:
        data = store.dataset(lake_uri, table)
        source = data if data is not None else SCHEMAS[table].empty_table()
        connection.register(f"_lake_{table}", source)
        connection.execute(f"CREATE VIEW {table} AS SELECT * FROM _lake_{table}")
    return connection


def query(lake_uri: str, sql: str) -> pa.Table:
    connection = connect(lake_uri)
    try:
        return connection.sql(sql).to_arrow_table()
    finally:
        connection.close()
