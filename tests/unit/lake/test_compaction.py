"""Compaction across runs: readers see every run whole and current, before, during and after it."""

import threading

import pytest

from servesweep.lake import store
from servesweep.lake.query import query


def _tables(run_id: str, version: int) -> dict:
    points = [{"run_id": run_id, "point_id": f"p{i}", "deployment_id": "d", "source": "measured", "status": "ok",
               "batch_size": i + 1, "output_token_throughput": float(version)} for i in range(3)]
    runs = [{"run_id": run_id, "spec_hash": f"h{version}"}]
    return {"points": store.to_table("points", points), "runs": store.to_table("runs", runs)}


def _state(lake: str) -> dict:
    rows = query(lake, "SELECT run_id, count(*) AS n, min(output_token_throughput) AS lo, "
                       "max(output_token_throughput) AS hi FROM points GROUP BY run_id ORDER BY run_id").to_pylist()
    return {r["run_id"]: (r["n"], r["lo"], r["hi"]) for r in rows}


def test_compacted_lake_reads_the_same_and_sees_later_rewrites(tmp_path):
    lake = str(tmp_path / "lake")
    for i in range(6):
        store.write_run(lake, f"run-{i}", _tables(f"run-{i}", 1))
    before = _state(lake)
    compaction = store.compact(lake)
    assert compaction is not None and set(compaction.runs) == {f"run-{i}" for i in range(6)}
    snap = store.snapshot(store.open_lake(lake, must_exist=True))
    assert snap.files["points"] == [] and snap.bundled["points"][0][2] == sorted(compaction.runs)
    assert _state(lake) == before
    assert store.run_ids(lake) == sorted(before)
    store.write_run(lake, "run-2", _tables("run-2", 7))  # rewritten after the compaction: its own files win
    store.write_run(lake, "run-9", _tables("run-9", 3))  # never compacted
    after = _state(lake)
    assert after["run-2"] == (3, 7.0, 7.0) and after["run-9"] == (3, 3.0, 3.0)
    assert {k: v for k, v in after.items() if k not in ("run-2", "run-9")} == \
        {k: v for k, v in before.items() if k != "run-2"}
    assert query(lake, "SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 7}]
    store.compact(lake)
    assert _state(lake) == after


def test_a_reader_during_compactions_and_rewrites_always_sees_whole_runs(tmp_path, monkeypatch):
    lake = str(tmp_path / "lake")
    for i in range(5):
        store.write_run(lake, f"run-{i}", _tables(f"run-{i}", 1))
    monkeypatch.setattr(store, "SUPERSEDED_GRACE_S", 0.0)  # prune at once: the hardest case for readers
    errors: list[BaseException] = []
    stop = threading.Event()
    seen = []

    def reader() -> None:
        while not stop.is_set():
            try:
                state = _state(lake)
                seen.append(state)
                for n, lo, hi in state.values():  # one generation per run: never a mix, never partial
                    assert n == 3 and lo == hi
                assert set(state) == {f"run-{i}" for i in range(5)}
            except BaseException as error:  # handed to the test below
                errors.append(error)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(2, 8):
            store.write_run(lake, f"run-{version % 5}", _tables(f"run-{version % 5}", version))
            store.compact(lake)
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors[0]
    assert seen
    assert _state(lake)["run-2"] == (3, 7.0, 7.0)


def test_a_snapshot_from_before_a_compaction_still_reads(tmp_path):
    lake = str(tmp_path / "lake")
    for i in range(3):
        store.write_run(lake, f"run-{i}", _tables(f"run-{i}", 1))
    store.compact(lake)
    old = store.snapshot(store.open_lake(lake, must_exist=True))
    store.compact(lake)  # supersedes the first; its files stay for the grace period
    assert old.changed()
    assert len(old.dataset("points").to_table()) == 9


@pytest.mark.parametrize("table", ["points", "runs"])
def test_nothing_to_compact_is_none_or_empty(tmp_path, table):
    lake = str(tmp_path / "lake")
    store.write_run(lake, "run-0", {})
    compaction = store.compact(lake, tables=(table,))
    assert compaction is not None and compaction.files == {}
