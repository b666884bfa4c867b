"""DuckDB over the lake: one view per table, named after it, spanning every run.

`run_sql` (what `servesweep query` runs) is sandboxed: once the views exist (the tables', and whatever
`setup` adds: servesweep.analysis.views passes its own) the connection loses file, network and extension
access and its settings are locked, and statements that reach outside the session are refused before they
run. The lake is read through pyarrow datasets made before the lock, so nothing can write it.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa

from servesweep.lake import store
from servesweep.lake.schema import PACKED_GAPS, SCHEMAS, TABLES, unpack_gaps

# Reads of the lake, and changes to this session's in-memory tables (e.g. UPDATE params): nothing else.
_RESULT_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_ALLOWED_TYPES = _RESULT_TYPES | {
    duckdb.StatementType.CREATE, duckdb.StatementType.INSERT, duckdb.StatementType.UPDATE,
    duckdb.StatementType.DELETE, duckdb.StatementType.DROP,
}
# A query that failed while a run was being rewritten is taken again on a fresh snapshot.
_ATTEMPTS = 4

Setup = Callable[[duckdb.DuckDBPyConnection], None]  # adds views to a connection before it is locked


class QueryRefused(ValueError):
    """A statement `servesweep query` does not run (it would reach outside the session)."""


def connect(lake_uri: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per lake table (`requests`, `points`, `server_metrics`, `runs`)."""
    return _connect(lake_uri)[0]


def _connect(lake_uri: str) -> tuple[duckdb.DuckDBPyConnection, store.Snapshot]:
    """Tables are pyarrow datasets over one snapshot, so gs:// lakes need no DuckDB extension (none can be
    downloaded where the pipeline runs), filters on run_id prune partitions and every run is seen whole."""
    snapshot = store.snapshot(store.open_lake(lake_uri, must_exist=True))
    connection = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                        "allow_persistent_secrets": False})
    connection.create_function("_servesweep_unpack_gaps", unpack_gaps, ["BLOB"], "FLOAT[]",  # type: ignore[call-overload]
                               type="arrow", side_effects=False)
    for table in TABLES:
        data = snapshot.dataset(table)
        connection.register(f"_lake_{table}", data if data is not None else SCHEMAS[table].empty_table())
        connection.execute(f"CREATE VIEW {table} AS {_view_sql(table)}")
    return connection, snapshot


def _view_sql(table: str) -> str:
    """The table as readers see it: requests' packed gaps (v6) appear in itl_ms, like older rows' (the UDF
    runs only when a query reads itl_ms)."""
    if table != "requests":
        return f"SELECT * FROM _lake_{table}"
    return (f"SELECT * EXCLUDE ({PACKED_GAPS}) REPLACE (coalesce(itl_ms, _servesweep_unpack_gaps({PACKED_GAPS})) "
            f"AS itl_ms) FROM _lake_{table}")


def lock(connection: duckdb.DuckDBPyConnection) -> None:
    """No files, network or extensions from here on, and no setting can undo that."""
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")


def statements(sql: str) -> list[duckdb.Statement]:
    """The statements of `sql`, each one checked against what the sandbox runs."""
    try:
        parsed = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryRefused(f"cannot parse the SQL: {error}") from None
    if not parsed:
        raise QueryRefused("no SQL statement given")
    for statement in parsed:
        if statement.type not in _ALLOWED_TYPES:
            raise QueryRefused(_refusal(statement))
    return parsed


def _refusal(statement: duckdb.Statement) -> str:
    kind = statement.type.name
    text = " ".join(statement.query.split())[:60]
    if kind in ("SET", "VARIABLE_SET"):
        return f"settings are fixed in servesweep query: refused {text!r}"
    return (f"{kind} statements are not allowed in servesweep query (refused {text!r}): it reads the lake with "
            "SELECT/EXPLAIN, and CREATE/INSERT/UPDATE/DELETE/DROP change only this session's in-memory tables")


def returns_rows(statement: duckdb.Statement) -> bool:
    return statement.type in _RESULT_TYPES


def run_sql(lake_uri: str, sql: str, setup: Setup | None = None) -> list[pa.Table]:
    """Run every statement of `sql` in the sandbox; the results of those that return rows, in order.
    `setup` adds views over the lake's tables before the lock."""
    checked = statements(sql)
    attempt = 1
    while True:
        try:
            connection, snapshot = _connect(lake_uri)
        except FileNotFoundError:  # a file of the snapshot was pruned before its dataset was made: look again
            if attempt == _ATTEMPTS:
                raise
            attempt += 1
            continue
        try:
            if setup is not None:
                setup(connection)
            lock(connection)
            return _execute(connection, checked)
        except (duckdb.Error, OSError):
            if attempt == _ATTEMPTS or not snapshot.changed():
                raise
        finally:
            connection.close()
        attempt += 1


def _execute(connection: duckdb.DuckDBPyConnection, checked: list[duckdb.Statement]) -> list[pa.Table]:
    results = []
    for statement in checked:
        relation = connection.sql(statement)
        if returns_rows(statement):  # read now: a later statement may change what it reads
            results.append(relation.to_arrow_table())
    return results


def query(lake_uri: str, sql: str, setup: Setup | None = None) -> pa.Table:
    """The result of the last statement that returns rows (`run_sql`, sandboxed)."""
    results = run_sql(lake_uri, sql, setup)
    if not results:
        raise QueryRefused("the SQL has no statement that returns rows")
    return results[-1]
