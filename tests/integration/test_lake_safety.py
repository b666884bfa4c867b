"""Nothing lost, no false success: failed and concurrent lake writes, stray files, old lakes, GCS faults, URIs."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from servesweep.lake import query as lake_query
from servesweep.lake import store
from servesweep.lake.query import query
from servesweep.lake.uri import validate_lake_uri
from tests.support.gcs_faults import faulty_proxy, silent_endpoint
from tests.support.paths import REPO

H100_LAKE = REPO / "benchmarks" / "results" / "h100" / "lake"


def _points(run_id: str, n: int, version: int = 0) -> pa.Table:
    """n points whose output_token_throughput is the write's version (a mixed read would show two)."""
    return store.to_table("points", [
        {"run_id": run_id, "point_id": f"p{i}", "deployment_id": "d", "source": "measured", "status": "ok",
         "batch_size": i + 1, "output_token_throughput": float(version)} for i in range(n)])


def _requests(run_id: str, n: int) -> pa.Table:
    return store.to_table("requests", [
        {"run_id": run_id, "point_id": "p0", "deployment_id": "d", "request_index": i, "warmup": False, "ok": True,
         "sent_at_s": 0.0, "sent_at_unix": 1.0, "requested_input_tokens": 8, "requested_output_tokens": 8}
        for i in range(n)])


def _samples(run_id: str, n: int, version: int = 0) -> pa.Table:
    return store.to_table("server_metrics", [
        {"run_id": run_id, "deployment_id": "d", "scraped_at_unix": float(i), "metric": "m", "value": float(version)}
        for i in range(n)])


def _run(run_id: str, version: int) -> dict[str, pa.Table]:
    n = 1 + version % 4
    return {"requests": _requests(run_id, 2 * n), "points": _points(run_id, n, version),
            "server_metrics": _samples(run_id, n, version)}


def _counts(lake: str) -> dict[str, int]:
    sql = "select run_id, count(*) as n from points group by run_id order by run_id"
    return {row["run_id"]: row["n"] for row in query(lake, sql).to_pylist()}


def _fail_midway(monkeypatch, on_call: int) -> None:
    """The `on_call`-th Parquet file of a write gets half its bytes, then the disk is full."""
    real = pq.write_table
    calls = []

    def write_table(table, where, **kwargs):
        calls.append(table)
        if len(calls) != on_call:
            return real(table, where, **kwargs)
        buffer = pa.BufferOutputStream()
        real(table, buffer, **kwargs)
        data = buffer.getvalue().to_pybytes()
        where.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(pq, "write_table", write_table)


@pytest.fixture(params=["local", "gcs"])
def lake(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "lake")
    request.getfixturevalue("gcs_emulator")
    return f"gs://lake/{uuid.uuid4().hex}"


def _unreadable_parquet(lake: str) -> list[str]:
    """Files under part-file names that are not whole Parquet files."""
    location = validate_lake_uri(lake)
    fs = store.open_lake(lake, must_exist=True).fs
    bad = []
    for info in fs.get_file_info(pafs.FileSelector(location.root, recursive=True)):
        if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
            try:
                with fs.open_input_file(info.path) as handle:
                    pq.read_metadata(handle)
            except (OSError, pa.ArrowInvalid):
                bad.append(info.path)
    return bad


def test_a_write_failing_midway_keeps_the_old_run_and_the_lake(lake, monkeypatch):
    store.write_run(lake, "run-a", _run("run-a", 2))  # 3 points, 6 requests, 3 samples
    store.write_run(lake, "run-b", {"points": _points("run-b", 2)})
    with monkeypatch.context() as patch:
        _fail_midway(patch, on_call=2)  # requests written whole, points cut in half
        with pytest.raises(OSError, match="injected"):
            store.write_run(lake, "run-a", _run("run-a", 3))
    if lake.startswith("gs://"):  # GCS finalised the cut upload: a truncated object now sits in the lake
        assert len(_unreadable_parquet(lake)) == 1
    else:  # locally it never had a part-file name and was removed
        assert _unreadable_parquet(lake) == []
        assert not list(Path(lake).rglob("*.tmp"))
    assert _counts(lake) == {"run-a": 3, "run-b": 2}
    assert query(lake, "select distinct output_token_throughput as v from points where run_id = 'run-a'"
                 ).to_pylist() == [{"v": 2.0}]
    assert len(store.read_table(lake, "requests", ["run-a"])) == 6
    assert len(store.read_table(lake, "server_metrics", ["run-a"])) == 3
    # The next write of the run succeeds and deletes what the failed one left.
    store.write_run(lake, "run-a", _run("run-a", 4))
    assert _counts(lake) == {"run-a": 1, "run-b": 2}
    assert _unreadable_parquet(lake) == []


def test_a_failed_commit_changes_nothing(tmp_path, monkeypatch):
    lake = str(tmp_path / "lake")
    store.write_run(lake, "run-a", _run("run-a", 1))
    real_put = store._put

    def put(target, path, write):
        if path.endswith(".json"):
            raise OSError("connection reset while committing (injected)")
        real_put(target, path, write)

    monkeypatch.setattr(store, "_put", put)
    with pytest.raises(OSError, match="injected"):
        store.write_run(lake, "run-a", _run("run-a", 2))
    assert _counts(lake) == {"run-a": 2}
    assert query(lake, "select max(output_token_throughput) as v from points").to_pylist() == [{"v": 1.0}]


def test_readers_never_see_a_run_half_replaced(tmp_path):
    lake = str(tmp_path / "lake")
    store.write_run(lake, "run-b", {"points": _points("run-b", 2)})
    store.write_run(lake, "run-a", _run("run-a", 0))
    sql = """
        select count(*) as n, min(output_token_throughput) as lo, max(output_token_throughput) as hi,
               (select count(*) from server_metrics where run_id = 'run-a') as samples,
               (select min(value) from server_metrics where run_id = 'run-a') as sample_lo,
               (select max(value) from server_metrics where run_id = 'run-a') as sample_hi,
               (select count(*) from requests where run_id = 'run-a') as requests,
               (select count(*) from points where run_id = 'run-b') as others
        from points where run_id = 'run-a'
    """
    stop, seen, problems = threading.Event(), [], []

    def read() -> None:
        while not stop.is_set():
            try:
                row = query(lake, sql).to_pylist()[0]
            except Exception as error:  # noqa: BLE001 - every failure is a finding
                problems.append(repr(error))
                continue
            version = int(row["lo"]) if row["lo"] is not None else -1
            expected = {"n": 1 + version % 4, "lo": version, "hi": version, "samples": 1 + version % 4,
                        "sample_lo": version, "sample_hi": version, "requests": 2 * (1 + version % 4), "others": 2}
            if row != expected:
                problems.append(f"inconsistent read {row}")
            seen.append(version)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        version = 0
        while len(seen) + len(problems) < 15 and version < 400:  # rewrite until the reader has read plenty
            version += 1
            store.write_run(lake, "run-a", _run("run-a", version))
            time.sleep(0.005)
    finally:
        stop.set()
        reader.join(60)
    assert problems == []
    assert len(seen) >= 15 and len(set(seen)) >= 5, seen  # the reader really overlapped the rewrites


def test_a_query_whose_files_were_pruned_under_it_is_taken_again(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "SUPERSEDED_GRACE_S", 0.0)  # a reader that outlived the grace
    lake = str(tmp_path / "lake")
    store.write_run(lake, "run-a", _run("run-a", 1))
    real_connect = lake_query._connect
    calls = []

    def connect_then_a_commit(uri):
        connection, snapshot = real_connect(uri)
        if not calls:  # the first snapshot's files are pruned before it is read
            store.write_run(lake, "run-a", _run("run-a", 3))
        calls.append(snapshot)
        return connection, snapshot

    monkeypatch.setattr(lake_query, "_connect", connect_then_a_commit)
    result = query(lake, "select count(*) as n, max(output_token_throughput) as v from points")
    assert result.to_pylist() == [{"n": 4, "v": 3.0}]
    assert len(calls) == 2


def test_a_snapshot_survives_one_rewrite_of_its_run(tmp_path):
    lake = str(tmp_path / "lake")
    store.write_run(lake, "run-a", _run("run-a", 1))
    before = store.snapshot(store.open_lake(lake, must_exist=True))
    store.write_run(lake, "run-a", _run("run-a", 2))
    assert before.dataset("points").to_table()["output_token_throughput"].to_pylist() == [1.0, 1.0]
    assert before.changed()


def test_superseded_generations_go_after_the_grace(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    for version in range(3):
        store.write_run(str(lake), "run-a", _run("run-a", version))
    assert len(list(lake.glob("points/run_id=run-a/*.parquet"))) == 3  # all superseded moments ago
    monkeypatch.setattr(store, "SUPERSEDED_GRACE_S", 0.0)
    store.write_run(str(lake), "run-a", _run("run-a", 3))
    for table in ("requests", "points", "server_metrics"):
        assert len(list(lake.glob(f"{table}/run_id=run-a/*.parquet"))) == 1
    assert len(list(lake.glob("_commits/run_id=run-a/*.json"))) == 1
    assert _counts(str(lake)) == {"run-a": 4}


def test_stray_files_do_not_break_queries(tmp_path):
    lake = tmp_path / "lake"
    store.write_run(str(lake), "run-a", _run("run-a", 2))
    for stray in ("README.txt", "points/README.txt", "points/run_id=run-a/README.txt", "points/notes.parquet",
                  "points/run_id=run-a/scratch.parquet", "_commits/README.txt", "_commits/run_id=run-a/x.json"):
        (lake / stray).write_text("not parquet, not a manifest\n")
    assert _counts(str(lake)) == {"run-a": 3}
    assert store.run_ids(str(lake)) == ["run-a"]
    store.write_run(str(lake), "run-a", _run("run-a", 3))  # pruning leaves files it does not know alone
    assert (lake / "points/run_id=run-a/README.txt").exists() and _counts(str(lake)) == {"run-a": 4}


def test_a_damaged_manifest_falls_back_to_the_previous_generation(tmp_path):
    lake = tmp_path / "lake"
    store.write_run(str(lake), "run-a", _run("run-a", 1))
    store.write_run(str(lake), "run-a", _run("run-a", 2))
    newest = sorted((lake / "_commits/run_id=run-a").glob("*.json"))[-1]
    newest.write_text('{"run_id": "run-a", "gener')
    with pytest.warns(UserWarning, match="unreadable manifest"):
        assert _counts(str(lake)) == {"run-a": 2}


def test_an_old_lake_reads_and_its_runs_can_be_rewritten(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    shutil.copytree(H100_LAKE, lake)
    legacy = {p.parent.name.removeprefix("run_id="): pq.read_metadata(p).num_rows
              for p in lake.glob("points/run_id=*/part-*.parquet")}
    assert len(legacy) == 3 and _counts(str(lake)) == legacy
    run = "h100-llama-1b"
    old_file = next((lake / "points" / f"run_id={run}").glob("part-*.parquet"))
    tables = {name: store.read_table(str(lake), name, [run]) for name in ("requests", "points", "server_metrics")}
    store.write_run(str(lake), run, {"points": tables["points"].slice(0, 1)})
    assert _counts(str(lake)) == {**legacy, run: 1}
    assert old_file.exists()  # the pre-manifest generation: readers in flight may hold it
    monkeypatch.setattr(store, "SUPERSEDED_GRACE_S", 0.0)
    store.write_run(str(lake), run, tables)
    assert _counts(str(lake)) == legacy and not old_file.exists()
    assert len(store.read_table(str(lake), "requests", [run])) == len(tables["requests"])


def test_gcs_uploads_retry_transient_errors(gcs_emulator, monkeypatch):
    lake = f"gs://lake/{uuid.uuid4().hex}"
    with faulty_proxy(gcs_emulator, fail_uploads=2) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        written = store.write_run(lake, "run-a", _run("run-a", 1))
    assert proxy.injected == 2 and proxy.forwarded_uploads >= 1
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    assert written == {"requests": 4, "points": 2, "server_metrics": 2, "runs": 0, "accuracy": 0}
    assert _counts(lake) == {"run-a": 2}


def test_an_unreachable_gcs_lake_fails_within_a_bound(monkeypatch):
    monkeypatch.setenv("SERVESWEEP_GCS_PROBE_TIMEOUT_S", "1.5")
    with silent_endpoint() as endpoint:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        for attempt in (lambda: query("gs://lake/x", "select 1"),
                        lambda: store.write_run("gs://lake/x", "run-a", _run("run-a", 1)),
                        lambda: validate_lake_uri("gs://lake/x", reach=True)):
            started = time.monotonic()
            with pytest.raises(store.LakeError, match=r"no answer within 1\.5 s"):
                attempt()
            assert time.monotonic() - started < 5


def test_gcs_errors_are_bounded_by_the_retry_limit(monkeypatch):
    """A refused connection is retried as transient, for SERVESWEEP_GCS_RETRY_S and no longer."""
    monkeypatch.setenv("SERVESWEEP_GCS_RETRY_S", "1")
    with silent_endpoint() as endpoint:
        pass  # closed: connections are refused now
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    started = time.monotonic()
    with pytest.raises(store.LakeError, match="unreachable"):
        query("gs://lake/x", "select 1")
    assert time.monotonic() - started < 8


def test_a_missing_gcs_bucket_is_refused_before_writing(gcs_emulator):
    with pytest.raises(store.LakeError, match="bucket 'no-such-bucket' does not exist"):
        store.write_run("gs://no-such-bucket/lake", "run-a", _run("run-a", 1))


@pytest.mark.parametrize(("uri", "message"), [
    ("gs:/x", "unsupported lake URI 'gs:/x': write gs://bucket/prefix"),
    ("gs:bucket/x", "write gs://bucket/prefix"),
    ("s3://bucket/x", "use a local path or gs://bucket/prefix"),
    ("gs://Bad_Bucket/x", "not a GCS bucket name"),
    ("gs://ab/x", "not a GCS bucket name"),
    ("gs://bucket//x", "empty, '.' or '..' part"),
    ("gs://bucket/../x", "empty, '.' or '..' part"),
    ("  ", "empty lake URI"),
])
def test_malformed_lake_uris_are_refused(uri, message):
    with pytest.raises(store.LakeError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate_lake_uri(uri)


def test_local_lake_paths_must_be_creatable(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(store.LakeError, match="is not a directory"):
        validate_lake_uri(str(tmp_path / "file" / "lake"))
    location = validate_lake_uri(f"file://{tmp_path}/new/deeper/lake")
    assert location.root == str(tmp_path / "new" / "deeper" / "lake") and not location.gcs
    assert validate_lake_uri("gs://my-bucket/a/b/").root == "my-bucket/a/b"
