"""Lake writer and DuckDB views, on a local directory and on a real GCS emulator."""

import re

import pyarrow as pa
import pytest

from servesweep.lake import store
from servesweep.lake.query import query
from servesweep.lake.schema import POINTS, SCHEMA_VERSION, SCHEMAS, describe


def _points(run_id: str, n: int) -> pa.Table:
    rows = [{"run_id": run_id, "point_id": f"p{i}", "deployment_id": "d", "source": "measured", "status": "ok",
             "batch_size": 2**i, "output_token_throughput": 100.0 * (i + 1)} for i in range(n)]
    return store.to_table("points", rows)


def _samples(run_id: str) -> pa.Table:
    return store.to_table("server_metrics", [{"run_id": run_id, "deployment_id": "d", "scraped_at_unix": 1.0,
                                              "metric": "vllm:num_requests_running", "labels": {"engine": "0"},
                                              "value": 2.0}])


def test_every_column_has_a_definition():
    for table in SCHEMAS:
        assert all(doc for _, _, doc in describe(table)), table


def test_rows_get_the_schema_version_and_unknown_columns_fail():
    table = _points("r", 1)
    assert table.schema == POINTS and table["schema_version"].to_pylist() == [SCHEMA_VERSION]
    with pytest.raises(store.LakeError, match="not in schema"):
        store.to_table("points", [{"run_id": "r", "point_id": "p", "deployment_id": "d", "source": "m",
                                   "status": "ok", "batch_size": 1, "bogus": 1}])


def _exercise(lake: str) -> None:
    # Reading a lake nobody wrote is an error, not 0 rows.
    with pytest.raises(store.LakeError, match="no lake at"):
        store.run_ids(lake)
    with pytest.raises(store.LakeError, match="no lake at"):
        query(lake, "select count(*) as n from points")
    store.write_run(lake, "run-a", {"points": _points("run-a", 3), "server_metrics": _samples("run-a")})
    store.write_run(lake, "run-b", {"points": _points("run-b", 2)})
    # Rerunning run-a with fewer points replaces it: no duplicates, no leftovers.
    written = store.write_run(lake, "run-a", {"points": _points("run-a", 1)})
    assert written == {"requests": 0, "points": 1, "server_metrics": 0, "runs": 0, "accuracy": 0}
    assert store.run_ids(lake) == ["run-a", "run-b"]
    counts = query(lake, "select run_id, count(*) as n from points group by run_id order by run_id").to_pylist()
    assert counts == [{"run_id": "run-a", "n": 1}, {"run_id": "run-b", "n": 2}]
    assert query(lake, "select count(*) as n from server_metrics").to_pylist() == [{"n": 0}]
    assert len(store.read_table(lake, "points", ["run-b"])) == 2
    with pytest.raises(store.LakeError, match="must all carry"):
        store.write_run(lake, "run-c", {"points": _points("run-a", 1)})


def test_local_lake(tmp_path):
    _exercise(str(tmp_path / "lake"))


def test_gcs_lake_on_emulator(gcs_emulator, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    _exercise("gs://lake/servesweep")
    client = storage.Client(project="test", credentials=AnonymousCredentials())

    def names(prefix: str) -> list[str]:
        return [b.name.removeprefix(f"servesweep/{prefix}") for b in client.list_blobs("lake",
                                                                                       prefix=f"servesweep/{prefix}")]

    # run-a's first generation stays beside its second for readers in flight (SUPERSEDED_GRACE_S)
    parts = names("points/")
    assert [n.rsplit("/", 1)[0] for n in parts] == ["run_id=run-a"] * 2 + ["run_id=run-b"]
    assert all(re.fullmatch(rf"part-v{SCHEMA_VERSION}-g\d{{8}}-[0-9a-f]{{8}}-0\.parquet", n.rsplit("/", 1)[1])
               for n in parts)
    assert len(names("_commits/run_id=run-a/")) == 2
    # past the grace, the next write leaves nothing of the earlier generations behind
    monkeypatch.setattr(store, "SUPERSEDED_GRACE_S", 0.0)
    store.write_run("gs://lake/servesweep", "run-a", {"points": _points("run-a", 2)})
    assert len(names("points/run_id=run-a/")) == 1 and not set(names("points/run_id=run-a/")) & set(parts)
    assert len(names("_commits/run_id=run-a/")) == 1 and names("server_metrics/run_id=run-a/") == []
    assert query("gs://lake/servesweep", "select count(*) as n from points where run_id = 'run-a'").to_pylist() == [
        {"n": 2}]


def test_bad_lake_uri():
    with pytest.raises(store.LakeError, match="unsupported lake URI"):
        store.open_lake("s3://bucket/x", must_exist=False)
