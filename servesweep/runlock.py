"""One writer per run id: `servesweep run` holds `{lake}/_locks/{run_id}.lock` while it runs.

Two runs with one run id would replace each other's lake partitions, each believing it succeeded;
the second one refuses instead. Local lakes: the lock file is created with O_CREAT|O_EXCL and holds
the holder's host and pid; a lock whose process is gone (same host) is stale and is taken over.
gs:// lakes: the lock object is created with if_generation_match=0, which GCS grants to one writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

LOCK_DIR = "_locks"


class LockError(RuntimeError):
    """The run lock cannot be taken: held by another run, or its store cannot be written."""


class RunLocked(LockError):
    """Another live run holds the run id (the message says who and where the lock is)."""


class _Lock(Protocol):
    where: str

    def create(self, record: str) -> Any | None: ...  # a token for `remove`, or None: it exists

    def read(self) -> tuple[str | None, Any]: ...  # (record, token); (None, None) when absent

    def remove(self, token: Any) -> None: ...  # only if the lock is still the one `token` names


class _LocalLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def create(self, record: str) -> str | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "w") as handle:
            handle.write(record)
        return record

    def read(self) -> tuple[str | None, str | None]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None, None
        return text, text

    def remove(self, token: str) -> None:
        # Compared first: a lock taken over as stale by another run is that run's now.
        if self.read()[1] == token:
            self.path.unlink(missing_ok=True)


class _GcsLock:
    def __init__(self, bucket: str, name: str, client: Any = None) -> None:
        self.bucket = (client or _storage_client()).bucket(bucket)
        self.name = name
        self.where = f"gs://{bucket}/{name}"

    def create(self, record: str) -> int | None:
        from google.api_core.exceptions import PreconditionFailed

        blob = self.bucket.blob(self.name)
        try:
            blob.upload_from_string(record, content_type="application/json", if_generation_match=0)
        except PreconditionFailed:
            return None
        generation: int | None = blob.generation
        return generation

    def read(self) -> tuple[str | None, int | None]:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.bucket.get_blob(self.name)
        if blob is None:
            return None, None
        generation = blob.generation  # read first: a download resets it from the response headers
        try:
            return blob.download_as_text(if_generation_match=generation), generation
        except (NotFound, PreconditionFailed):  # released or replaced while we looked
            return None, None

    def remove(self, token: int) -> None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        with contextlib.suppress(NotFound, PreconditionFailed):
            self.bucket.blob(self.name).delete(if_generation_match=token)


def _storage_client() -> Any:  # a google.cloud.storage.Client
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):  # tests and local development: no credentials there
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="servesweep-local", credentials=AnonymousCredentials())
    return storage.Client()


def lock_for(lake_uri: str, run_id: str) -> _Lock:
    name = f"{LOCK_DIR}/{run_id}.lock"
    if lake_uri.startswith("gs://"):
        bucket, _, prefix = lake_uri.removeprefix("gs://").rstrip("/").partition("/")
        return _GcsLock(bucket, f"{prefix}/{name}" if prefix else name)
    return _LocalLock(Path(os.path.abspath(lake_uri.removeprefix("file://"))) / name)


def _record(run_id: str) -> str:
    return json.dumps({"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                       "started": datetime.now(UTC).isoformat(timespec="seconds")})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(record: str) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        data = json.loads(record)
        if isinstance(data, dict):
            return data
    return {}


def _stale(holder: dict[str, Any]) -> bool:
    """Only a holder on this host whose process is gone; another host's pid means nothing here."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def acquire(lock: _Lock, run_id: str) -> Any:
    """Take the lock (over a stale one, once); RunLocked when a live run holds it. Returns the release token."""
    record = _record(run_id)
    for _ in range(2):
        token = lock.create(record)
        if token is not None:
            return token
        held, held_token = lock.read()
        if held is None:
            continue  # released between our create and read
        holder = _holder(held)
        if not _stale(holder):
            who = (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}" if holder
                   else "an unreadable lock")
            raise RunLocked(f"run id {run_id!r} is already running ({who}); give another --run-id, or delete "
                            f"{lock.where} if that run is gone")
        lock.remove(held_token)
    raise RunLocked(f"run id {run_id!r}: another run took the stale lock {lock.where} first")


@contextlib.contextmanager
def run_lock(lake_uri: str, run_id: str) -> Iterator[str]:
    """Hold the run id's lock while inside; yields where the lock lives. LockError when it cannot be had."""
    where = f"{lake_uri}/{LOCK_DIR}/{run_id}.lock"
    try:
        lock = lock_for(lake_uri, run_id)
        token = acquire(lock, run_id)
    except LockError:
        raise
    except Exception as error:  # whatever the filesystem or the GCS client raised, as one line
        raise LockError(f"cannot take the run lock {where}: {type(error).__name__}: {error}") from None
    try:
        yield lock.where
    finally:
        try:
            lock.remove(token)
        except Exception as error:  # the run's outcome stands; the next run on this host sees a stale lock
            print(f"warning: could not remove the run lock {lock.where}: {error}", file=sys.stderr)
