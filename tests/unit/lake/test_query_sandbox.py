"""`servesweep query` is read-only and sandboxed; lake and output errors are one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from servesweep.analysis.views import run_sql
from servesweep.cli import app
from servesweep.lake import store
from servesweep.lake.query import QueryRefused, _connect, lock
from servesweep.spec import PipelineParams
from tests.support.paths import REPO

MARKUP = ("[/v1/completions]", ":x:", "[bold red]loud[/]")


@pytest.fixture
def lake(tmp_path) -> str:
    rows = [{"run_id": "run-a", "point_id": value, "deployment_id": "d", "source": "measured", "status": "ok",
             "batch_size": i + 1} for i, value in enumerate(MARKUP)]
    uri = str(tmp_path / "lake")
    store.write_run(uri, "run-a", {"points": store.to_table("points", rows)})
    return uri


def _lake_files(lake: str) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in Path(lake).rglob("*") if p.is_file()}


def _one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("sql", [
    "COPY points TO '{file}' (FORMAT parquet)",
    "COPY (SELECT 1) TO '{dir}/new.csv'",
    "ATTACH '{dir}/other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "EXPORT DATABASE '{dir}/export'",
    "IMPORT DATABASE '{dir}/export'",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET threads",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
    "SELECT 1; COPY points TO '{file}'",  # refused before the first statement runs
])
def test_statements_that_reach_outside_the_session_are_refused(lake, sql):
    file = next(Path(lake).rglob("*.parquet"))
    before = _lake_files(lake)
    with pytest.raises(QueryRefused, match="not allowed|settings are fixed"):
        run_sql(lake, sql.format(file=file, dir=Path(lake).parent))
    assert _lake_files(lake) == before
    assert sorted(p.name for p in Path(lake).parent.iterdir()) == ["lake"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{lake}/points/**/*.parquet')",
    "CREATE TABLE leak AS SELECT * FROM read_csv('/etc/passwd')",
    "EXPLAIN ANALYZE COPY points TO '{lake}/leak.csv'",  # an allowed statement type wrapping a COPY
])
def test_allowed_statements_cannot_touch_files(lake, sql):
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        run_sql(lake, sql.format(lake=lake))
    assert not (Path(lake) / "leak.csv").exists()


def test_the_lock_holds_without_the_statement_filter(lake, tmp_path):
    connection, _ = _connect(lake)
    lock(connection)
    with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
        connection.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.PermissionException):
        connection.execute(f"COPY points TO '{tmp_path / 'out.csv'}'")
    assert not (tmp_path / "out.csv").exists()
    assert connection.sql("SELECT count(*) FROM points").fetchall() == [(3,)]  # the lake still reads
    connection.close()


def test_every_statement_runs_in_order(lake):
    results = run_sql(lake, "SELECT slo_ttft_p99_ms AS s FROM params; UPDATE params SET slo_ttft_p99_ms = 7; "
                            "SELECT slo_ttft_p99_ms AS s FROM params; SELECT count(*) AS n FROM points")
    assert [r.to_pylist() for r in results] == [[{"s": None}], [{"s": 7.0}], [{"n": 3}]]


def test_cli_prints_every_result_and_cell_text_literally(lake):
    sql = ('SELECT point_id, \'[b]hi[/b] :thumbs_up:\' AS "[red]col" FROM points ORDER BY batch_size; '
           "SELECT 41 + 1 AS answer")
    result = CliRunner().invoke(app, ["query", sql, "--lake", lake])
    assert result.exit_code == 0, result.output
    for text in (*MARKUP, "[b]hi[/b] :thumbs_up:", "[red]col", "answer", "42"):
        assert text in result.output, text
    assert "❌" not in result.output and "👍" not in result.output


def test_cli_csv_and_json_take_one_result(lake):
    csv = CliRunner().invoke(app, ["query", "SELECT point_id FROM points ORDER BY batch_size", "--lake", lake,
                                   "--output", "csv"])
    assert csv.exit_code == 0 and csv.output.splitlines() == ['"point_id"', *(f'"{m}"' for m in MARKUP)]
    two = CliRunner().invoke(app, ["query", "SELECT 1; SELECT 2", "--lake", lake, "--output", "json"])
    assert "prints one result" in _one_line_error(two)


@pytest.mark.parametrize(("args", "message"), [
    (["query", "SELECT 1", "--output", "xml"], "unknown --output 'xml': use table, csv, json"),
    (["query", "COPY points TO '/tmp/x.csv'"], "COPY statements are not allowed"),
    (["query", "SET threads = 1"], "settings are fixed"),
    (["query", "SELECT * FROM read_csv('/etc/passwd')"], "query failed: Permission Error"),
])
def test_cli_query_errors_are_one_line(lake, args, message):
    assert message in _one_line_error(CliRunner().invoke(app, [*args, "--lake", lake]))


def test_cli_sql_errors_keep_duckdb_s_hints(lake):
    result = CliRunner().invoke(app, ["query", "SELECT nope FROM points", "--lake", lake])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: query failed: Binder Error") and "Candidate bindings" in result.output


@pytest.mark.parametrize(("lake_arg", "message"), [
    ("missing", "no lake at"),
    ("gs:/x", "unsupported lake URI 'gs:/x': write gs://bucket/prefix"),
    ("gs://Bad_Bucket/lake", "not a GCS bucket name"),
])
@pytest.mark.parametrize("command", [["query", "SELECT count(*) FROM points"], ["report", "run-a"]])
def test_query_and_report_on_a_missing_or_malformed_lake(tmp_path, command, lake_arg, message):
    uri = str(tmp_path / lake_arg) if lake_arg == "missing" else lake_arg
    result = CliRunner().invoke(app, [*command, "--lake", uri, *(["--out", str(tmp_path / "r")]
                                                                 if command[0] == "report" else [])])
    assert message in _one_line_error(result)
    assert not (tmp_path / "r").exists()


def test_run_checks_the_lake_before_anything_starts(tmp_path, monkeypatch):
    import pipelines.local

    def never(*args, **kwargs):
        raise AssertionError("the pipeline started despite a bad lake")

    monkeypatch.setattr(pipelines.local, "run_locally", never)
    spec = REPO / "specs" / "local.yaml"
    (tmp_path / "file").write_text("x")
    for lake, message in (("gs:/bucket/lake", "write gs://bucket/prefix"),
                          (str(tmp_path / "file" / "lake"), "is not a directory")):
        result = CliRunner().invoke(app, ["run", str(spec), "--lake", lake, "--pipeline-root", str(tmp_path / "p")])
        assert message in _one_line_error(result)


def test_pipelines_resolve_spec_refuses_a_bad_lake(tmp_path, capsys):
    from pipelines.argo_steps import BAD_INPUT, main
    from pipelines.kfp_pipeline import resolve_spec

    with pytest.raises(store.LakeError, match="write gs://bucket/prefix"):
        resolve_spec.python_func(**(PipelineParams().model_dump() | {"lake_uri": "gs:/x"}))
    assert main(["resolve-spec", "--out_spec_json", str(tmp_path / "spec"), "--lake_uri", "gs:/x"]) == BAD_INPUT
    assert "lake_uri: unsupported lake URI 'gs:/x'" in capsys.readouterr().err
    assert not (tmp_path / "spec").exists()
