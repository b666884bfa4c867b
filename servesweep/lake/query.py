"""DuckDB over the lake: one view per table, named after it, spanning every run, plus the analysis views."""

from __future__ import annotations

import warnings

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
    _add_analysis_views(connection)
    return connection


def _add_analysis_views(connection: duckdb.DuckDBPyConnection) -> None:
    """The servesweep/sql views (point_costs, ideal_batch, ...) with default parameters.

    A broken catalog override must not take the raw tables down with it, so failures only warn.
    """
    from servesweep.analysis.views import create_views
    from servesweep.catalog import CatalogError

    try:
        create_views(connection)
    except (CatalogError, duckdb.Error) as error:
        warnings.warn(f"analysis views unavailable: {error}", stacklevel=3)


def query(lake_uri: str, sql: str) -> pa.Table:
    connection = connect(lake_uri)
    try:
        return connection.sql(sql).to_arrow_table()
    finally:
        connection.close()
