"""The analysis views: SQL files in ``servesweep/sql/`` created on a DuckDB connection over the lake.

The lake knows nothing of them: :func:`connect`, :func:`run_sql` and :func:`query` are the lake's own
(servesweep.lake.query) with the views added, and are what `servesweep query`, the report and the tests use.

Parameters live in tables the views read, never in the SQL text: ``params`` (one row: the p99 SLO bounds, the
share of requests a point measured with a per-request SLO must keep within it, and the baseline accelerator)
and ``selected_runs`` (run ids; empty = every run). Change them with :func:`set_params`, or in SQL
(``UPDATE params SET slo_ttft_p99_ms = 500``); the views follow at once. ``prices`` is the accelerator
catalog as a table (``servesweep.catalog.prices_table``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from importlib import resources

import duckdb
import pyarrow as pa

from servesweep.catalog import Catalog, CatalogError, load_catalog, prices_table
from servesweep.lake import query as lake_query
from servesweep.spec import SLOSpec

DEFAULT_BASELINE = "nvidia-l4"
# Creation order: each view reads only the ones before it.
VIEWS = (
    "point_costs",
    "throughput_by_batch",
    "latency_by_batch",
    "throughput_per_dollar_normalised",
    "prefill_decode",
    "ideal_batch",
    "quantize_variants",
    "pareto_frontier",
)

_PARAMS_SCHEMA = pa.schema(
    [
        ("slo_ttft_p99_ms", pa.float64()), ("slo_tpot_p99_ms", pa.float64()), ("slo_e2e_p99_ms", pa.float64()),
        ("slo_min_attainment", pa.float64()), ("baseline_accelerator", pa.string()),
    ]
)
_RUNS_SCHEMA = pa.schema([("run_id", pa.string())])


def connect(
    lake_uri: str, slo: SLOSpec | None = None, baseline: str = DEFAULT_BASELINE, run_ids: Sequence[str] = (),
    catalog: Catalog | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over the lake with every view, its parameters set as given (not sandboxed)."""
    connection = lake_query.connect(lake_uri)
    try:
        create_views(connection, slo, baseline, run_ids, catalog)
    except BaseException:
        connection.close()
        raise
    return connection


def run_sql(lake_uri: str, sql: str) -> list[pa.Table]:
    """`servesweep query`: the lake's sandboxed SQL (servesweep.lake.query.run_sql) with the views added."""
    return lake_query.run_sql(lake_uri, sql, setup=add_default_views)


def query(lake_uri: str, sql: str) -> pa.Table:
    """The last result of `run_sql`."""
    return lake_query.query(lake_uri, sql, setup=add_default_views)


def add_default_views(connection: duckdb.DuckDBPyConnection) -> None:
    """Every view with default parameters. A broken catalog override must not take the raw tables down with
    it, so a failure only warns."""
    try:
        create_views(connection)
    except (CatalogError, duckdb.Error) as error:
        warnings.warn(f"analysis views unavailable: {error}", stacklevel=3)


def view_sql(name: str) -> str:
    if name not in VIEWS:
        raise KeyError(f"unknown view {name!r}; views: {', '.join(VIEWS)}")
    return resources.files("servesweep").joinpath(f"sql/{name}.sql").read_text()


def view_doc(name: str) -> str:
    """The view's header comment: what it holds and its columns."""
    lines = []
    for line in view_sql(name).splitlines():
        if not line.startswith("--"):
            break
        lines.append(line.removeprefix("--").removeprefix(" "))
    return "\n".join(lines)


def create_views(
    connection: duckdb.DuckDBPyConnection,
    slo: SLOSpec | None = None,
    baseline: str = DEFAULT_BASELINE,
    run_ids: Sequence[str] = (),
    catalog: Catalog | None = None,
) -> tuple[str, ...]:
    """Register ``prices``, ``params``, ``selected_runs`` and every view on a connection that has ``points``."""
    _replace_table(connection, "prices", prices_table(catalog or load_catalog()))
    set_params(connection, slo, baseline, run_ids)
    for name in VIEWS:
        connection.execute(view_sql(name))
    return VIEWS


def set_params(
    connection: duckdb.DuckDBPyConnection,
    slo: SLOSpec | None = None,
    baseline: str = DEFAULT_BASELINE,
    run_ids: Sequence[str] = (),
) -> None:
    """Set the SLO, the baseline accelerator and the runs the views cover (empty: all runs)."""
    slo = slo or SLOSpec()
    params = pa.Table.from_pylist(
        [{"slo_ttft_p99_ms": slo.ttft_p99_ms, "slo_tpot_p99_ms": slo.tpot_p99_ms, "slo_e2e_p99_ms": slo.e2e_p99_ms,
          "slo_min_attainment": slo.min_attainment, "baseline_accelerator": baseline}],
        schema=_PARAMS_SCHEMA,
    )
    _replace_table(connection, "params", params)
    _replace_table(connection, "selected_runs", pa.Table.from_pylist([{"run_id": r} for r in run_ids], _RUNS_SCHEMA))


def _replace_table(connection: duckdb.DuckDBPyConnection, name: str, data: pa.Table) -> None:
    # A real table (not a view over the Arrow object) so users can UPDATE it from SQL.
    connection.register("_servesweep_staging", data)
    try:
        connection.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _servesweep_staging")
    finally:
        connection.unregister("_servesweep_staging")
