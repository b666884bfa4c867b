"""Lake URIs: parse and validate them, open their filesystem, reach GCS within a bound."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

T = TypeVar("T")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# GCS bucket names: 3-63 lowercase letters, digits, '-', '_', '.'; a letter or digit at both ends.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_ENV = {"retry_s": "SERVESWEEP_GCS_RETRY_S", "probe_timeout_s": "SERVESWEEP_GCS_PROBE_TIMEOUT_S"}


class LakeError(RuntimeError):
    """The lake cannot be used as asked: a bad URI, no lake there, GCS out of reach, rows for the wrong run."""


class GcsOptions(BaseModel):
    """How long GCS calls may take; each field can be set from its environment variable (see _ENV)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retry_s: float = Field(15.0, gt=0, description="Transient errors (5xx, 429, dropped connections) are retried "
                                                   "for this long per request.")
    probe_timeout_s: float = Field(20.0, gt=0, description="Bound on the first call to the bucket: a silent endpoint "
                                                           "otherwise holds a call for minutes (curl's own timeout).")

    @classmethod
    def from_env(cls) -> GcsOptions:
        values = {field: os.environ[name] for field, name in _ENV.items() if os.environ.get(name)}
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            first = error.errors()[0]
            raise LakeError(f"{_ENV[str(first['loc'][0])]}: {first['msg']}") from None


@dataclass(frozen=True)
class LakeLocation:
    uri: str
    gcs: bool
    root: str  # "bucket/prefix" on GCS, an absolute path locally

    @property
    def bucket(self) -> str:
        return self.root.partition("/")[0]


def parse_lake_uri(uri: str) -> LakeLocation:
    """The URI's form only (nothing is touched): a local path, file://path or gs://bucket[/prefix]."""
    text = uri.strip()
    if not text:
        raise LakeError("empty lake URI: use a local directory or gs://bucket/prefix")
    if text.startswith("gs://"):
        return LakeLocation(uri, True, _gcs_root(uri, text.removeprefix("gs://").rstrip("/")))
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif match := _SCHEME.match(text):
        hint = "write gs://bucket/prefix" if match.group(1).lower() == "gs" else "use a local path or gs://bucket/prefix"
        raise LakeError(f"unsupported lake URI {uri!r}: {hint}")
    return LakeLocation(uri, False, os.path.abspath(text))


def _gcs_root(uri: str, path: str) -> str:
    bucket, _, prefix = path.partition("/")
    if not _BUCKET.match(bucket):
        raise LakeError(f"lake URI {uri!r}: {bucket!r} is not a GCS bucket name (3-63 of a-z 0-9 . _ -)")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise LakeError(f"lake URI {uri!r}: the prefix has an empty, '.' or '..' part")
    return path


def validate_lake_uri(uri: str, *, reach: bool = False) -> LakeLocation:
    """Check a lake URI before anything is spent: its form; a local path must be writable or creatable.

    With `reach`, a gs:// lake's bucket must also answer (within GcsOptions.probe_timeout_s) and exist.
    """
    location = parse_lake_uri(uri)
    if location.gcs:
        if reach:
            check_bucket(location, filesystem(location))
    else:
        _check_local_writable(location)
    return location


def _check_local_writable(location: LakeLocation) -> None:
    path = Path(location.root)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise LakeError(f"lake {location.uri!r}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the lake directory" if existing == path else f"{existing}, where it would be created,"
        raise LakeError(f"lake {location.uri!r}: {what} is not writable")


def filesystem(location: LakeLocation) -> pafs.FileSystem:
    """pyarrow's filesystem for the lake; gs:// honours STORAGE_EMULATOR_HOST (tests, local dev)."""
    if not location.gcs:
        return pafs.LocalFileSystem()
    # The client retries transient errors itself; without a limit it does so for 15 minutes.
    retry = timedelta(seconds=GcsOptions.from_env().retry_s)
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        scheme, _, host = emulator.rpartition("://")
        return pafs.GcsFileSystem(anonymous=True, endpoint_override=host, scheme=scheme or "http",
                                  retry_time_limit=retry)
    return pafs.GcsFileSystem(retry_time_limit=retry)


def check_bucket(location: LakeLocation, fs: pafs.FileSystem) -> None:
    """The lake's bucket answers within the probe bound and exists."""
    timeout = GcsOptions.from_env().probe_timeout_s
    what = f"lake {location.uri}: GCS"
    try:
        info = bounded(lambda: fs.get_file_info(location.bucket), timeout, what)
    except OSError as error:
        raise LakeError(f"{what} unreachable: {first_line(error)}") from None
    if info.type != pafs.FileType.Directory:
        raise LakeError(f"lake {location.uri}: GCS bucket {location.bucket!r} does not exist (or is not visible "
                        "to these credentials)")


def bounded(call: Callable[[], T], seconds: float, what: str) -> T:
    """`call` in a daemon thread, abandoned after `seconds`: a C++ call cannot be interrupted, only left behind."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the caller below
            outcome["error"] = error

    thread = threading.Thread(target=target, name="servesweep-lake-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise LakeError(f"{what}: no answer within {seconds:g} s (network? credentials? "
                        f"{_ENV['probe_timeout_s']} sets the bound)")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def first_line(error: BaseException, limit: int = 300) -> str:
    """One line of an error: GCS client errors run to many lines of metadata."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."
