"""One run id, one writer: the lock `servesweep run` holds in the lake, on local disk and on GCS."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from google.api_core.exceptions import NotFound, PreconditionFailed
from typer.testing import CliRunner

from servesweep.cli import app
from servesweep.runlock import RunLocked, _GcsLock, acquire, lock_for, run_lock
from tests.support.paths import REPO


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(lake: Path, run_id: str, **holder: object) -> Path:
    path = lake / "_locks" / f"{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder) if holder else "")
    return path


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path):
    lake = str(tmp_path / "lake")
    with run_lock(lake, "r1") as where:
        assert Path(where) == tmp_path / "lake" / "_locks" / "r1.lock"
        assert json.loads(Path(where).read_text())["host"] == socket.gethostname()
        with pytest.raises(RunLocked, match=r"run id 'r1' is already running \(pid \d+"):
            acquire(lock_for(lake, "r1"), "r1")
        with run_lock(lake, "r2"):  # another run id is another lock
            pass
    assert not Path(where).exists()
    with run_lock(lake, "r1"):
        pass


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = _write_lock(tmp_path, "r", host=socket.gethostname(), pid=_dead_pid(), started="earlier")
    with run_lock(str(tmp_path), "r"):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


@pytest.mark.parametrize("holder", [
    pytest.param({"host": "another-host", "pid": 1}, id="another-host"),  # its pid cannot be checked here
    pytest.param({}, id="unreadable"),  # e.g. a writer between create and write
])
def test_a_lock_that_cannot_be_judged_stale_is_respected(tmp_path, holder):
    path = _write_lock(tmp_path, "r", **holder)
    with pytest.raises(RunLocked, match="delete .*r.lock if that run is gone"):
        acquire(lock_for(str(tmp_path), "r"), "r")
    assert path.exists()


def test_concurrent_processes_get_the_lock_exactly_once(tmp_path):
    """Four processes race for one run id: O_CREAT|O_EXCL lets exactly one in."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from servesweep.runlock import RunLocked, run_lock
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
        try:
            with run_lock({str(tmp_path)!r}, "race"):
                print("held", flush=True)
                time.sleep(2)
        except RunLocked:
            print("refused", flush=True)
    """)
    start = str(time.time() + 1.5)
    processes = [subprocess.Popen([sys.executable, "-c", script, start], stdout=subprocess.PIPE, text=True)
                 for _ in range(4)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in processes)
    assert outcomes == ["held", "refused", "refused", "refused"]
    assert not (tmp_path / "_locks" / "race.lock").exists()


def test_servesweep_run_refuses_a_run_id_that_is_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lake = tmp_path / "lake"
    with run_lock(str(lake), "busy"):
        result = CliRunner().invoke(app, ["run", str(REPO / "specs" / "local.yaml"), "--run-id", "busy",
                                          "--lake", str(lake), "--pipeline-root", str(tmp_path / "kfp")])
    assert result.exit_code == 2
    assert "run id 'busy' is already running" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "kfp").exists()  # refused before the pipeline started


# --- GCS -------------------------------------------------------------------------------------------

class FakeBucket:
    """GCS objects with generation preconditions as GCS documents them (the storage emulator ignores them)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[int, str]] = {}
        self.generations = itertools.count(1000)

    def bucket(self, _name: str) -> FakeBucket:
        return self

    def blob(self, name: str) -> FakeBlob:
        return FakeBlob(self, name)

    def get_blob(self, name: str) -> FakeBlob | None:
        if name not in self.objects:
            return None
        blob = FakeBlob(self, name)
        blob.generation = self.objects[name][0]
        return blob


class FakeBlob:
    def __init__(self, bucket: FakeBucket, name: str) -> None:
        self.bucket, self.name, self.generation = bucket, name, None

    def _check(self, if_generation_match: int | None) -> None:
        current = self.bucket.objects.get(self.name, (0, ""))[0]
        if if_generation_match is not None and current != if_generation_match:
            raise PreconditionFailed(f"{self.name}: generation {current} != {if_generation_match}")

    def upload_from_string(self, data: str, content_type: str = "", if_generation_match: int | None = None) -> None:
        self._check(if_generation_match)
        self.generation = next(self.bucket.generations)
        self.bucket.objects[self.name] = (self.generation, data)

    def download_as_text(self, if_generation_match: int | None = None) -> str:
        if self.name not in self.bucket.objects:
            raise NotFound(self.name)
        self._check(if_generation_match)
        return self.bucket.objects[self.name][1]

    def delete(self, if_generation_match: int | None = None) -> None:
        if self.name not in self.bucket.objects:
            raise NotFound(self.name)
        self._check(if_generation_match)
        del self.bucket.objects[self.name]


def test_gcs_lock_is_a_precondition_object():
    store = FakeBucket()
    lock = _GcsLock("lake", "runs/_locks/r.lock", client=store)
    token = acquire(lock, "r")
    assert json.loads(store.objects["runs/_locks/r.lock"][1])["run_id"] == "r"
    with pytest.raises(RunLocked, match="gs://lake/runs/_locks/r.lock"):
        acquire(_GcsLock("lake", "runs/_locks/r.lock", client=store), "r")
    lock.remove(token)
    assert store.objects == {}


def test_gcs_stale_lock_is_replaced_and_a_newer_holder_is_never_deleted():
    store = FakeBucket()
    name = "_locks/r.lock"
    store.blob(name).upload_from_string(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    lock = _GcsLock("lake", name, client=store)
    token = acquire(lock, "r")
    assert json.loads(store.objects[name][1])["pid"] == os.getpid()
    # Someone else replaced the object meanwhile: removing with our generation leaves theirs alone.
    store.blob(name).upload_from_string(json.dumps({"host": "other", "pid": 1}))
    lock.remove(token)
    assert json.loads(store.objects[name][1])["host"] == "other"


def test_gcs_lock_on_the_emulator(gcs_emulator):
    """The real client and wire format: the lock object exists while held and is gone after."""
    lock = lock_for("gs://lake/locktest", "r")
    with run_lock("gs://lake/locktest", "r") as where:
        assert where == "gs://lake/locktest/_locks/r.lock"
        record, generation = lock.read()
        assert json.loads(record)["run_id"] == "r" and generation
    assert lock.read() == (None, None)
