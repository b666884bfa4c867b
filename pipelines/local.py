"""Run the KFP pipeline on this machine with KFP's local SubprocessRunner (no cluster, no Docker)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path

from servesweep.platform.local import LocalPlatform
from servesweep.spec import BenchmarkSpec, spec_to_params

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_STEP_NOTES = re.compile(r"^\s*(deployment \S+: .*|adaptive \S+ .*|lake .*|stopped: .*|"
                         r"stopped (?:climbing|the search) .*|resume \S+: .*|all \d+ points measured|"
                         r"\d+ of \d+ points failed: .*)$")
# The last step fails the run when points failed (servesweep.outcome): that is a verdict, not a crash.
VERDICT_TASK = "check-points"
_VERDICT = re.compile(rf"Inner task failed: '{VERDICT_TASK}'")


class PipelineFailed(RuntimeError):
    pass


class TaskLog(io.TextIOBase):
    """Stands in for stdout while KFP runs: every line goes to a log file; the console gets one line
    per finished task, the steps' own notes, and the log tail of a task that failed."""

    def __init__(self, log_file: io.TextIOBase, echo: Callable[[str], None]) -> None:
        self._file = log_file
        self._echo = echo
        self._partial = ""
        self._recent: deque[str] = deque(maxlen=40)
        self._started: dict[str, float] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._file.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def _line(self, line: str) -> None:
        if started := _STARTED.search(line):
            self._started[started.group(1)] = time.monotonic()
            self._recent.clear()
        elif finished := _FINISHED.search(line):
            task, status = finished.groups()
            seconds = time.monotonic() - self._started.get(task, time.monotonic())
            mark = "ok  " if status == "SUCCESS" else "FAIL"
            self._echo(f"  {mark} {task} ({seconds:.1f} s)")
            if status != "SUCCESS" and task != VERDICT_TASK:  # its note already said why
                self._echo("".join(f"       | {recent}\n" for recent in self._recent if recent.strip()).rstrip())
        elif note := _STEP_NOTES.match(line):
            self._echo(f"       {note.group(1)}")
        self._recent.append(line)


def run_locally(spec: BenchmarkSpec, pipeline_root: str | Path = "local_outputs", verbose: bool = False) -> str:
    """Run the whole pipeline for `spec` (with a concrete run id); returns the lake URI, also when points
    failed (the last step's verdict: servesweep.outcome judges the lake); raises PipelineFailed for a crash.

    Servers live in a state directory private to this call, so whatever happens (a failed step,
    Ctrl-C) every server this run started is stopped before returning, the directory is removed and
    the servers' logs are kept in `{pipeline_root}/{run_id}-servers/`. KFP's own chatty log goes
    to `{pipeline_root}/{run_id}.log` unless `verbose`.
    """
    from kfp import local

    from pipelines.kfp_pipeline import servesweep_pipeline

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # Locally the steps run in this venv, not in the image the components name for the cluster.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    state_dir = tempfile.mkdtemp(prefix="servesweep-servers-")
    previous = os.environ.get("SERVESWEEP_STATE_DIR")
    os.environ["SERVESWEEP_STATE_DIR"] = state_dir  # the task subprocesses inherit it
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    log_path = root / f"{spec.run_id or 'run'}.log"
    server_logs = root / f"{spec.run_id or 'run'}-servers"
    console = sys.stdout
    try:
        with open(log_path, "w") as log_file, _capture(log_file, console, verbose):
            servesweep_pipeline(**spec_to_params(spec).model_dump())
    except RuntimeError as error:  # KFP raises after the exit handler ran
        message = _ANSI.sub("", str(error))
        if not _VERDICT.search(message):
            raise PipelineFailed(f"{message}\nfull log: {log_path}\nserver logs: {server_logs}") from None
    finally:
        for owner in Path(state_dir).iterdir():
            if owner.is_dir():
                LocalPlatform().teardown_job(owner.name)
        if previous is None:
            os.environ.pop("SERVESWEEP_STATE_DIR", None)
        else:
            os.environ["SERVESWEEP_STATE_DIR"] = previous
        if keep_server_logs(Path(state_dir), server_logs):
            print(f"server logs: {server_logs}", file=console, flush=True)
            with open(log_path, "a") as log_file:
                print(f"server logs: {server_logs}", file=log_file)
        shutil.rmtree(state_dir, ignore_errors=True)
    return spec.lake_uri


def keep_server_logs(state_dir: Path, target: Path) -> list[Path]:
    """Move the servers' logs (`{state_dir}/{owner}/logs/*`) to `target`, replacing those of an earlier run
    of the same id (as its log and its lake partition are); returns where they went."""
    shutil.rmtree(target, ignore_errors=True)
    kept = []
    for log in sorted(state_dir.glob("*/logs/*")):
        target.mkdir(parents=True, exist_ok=True)
        destination = target / log.name
        if destination.exists():  # the same deployment under a second owner: keep both
            destination = target / f"{log.parent.parent.name}-{log.name}"
        kept.append(Path(shutil.move(log, destination)))
    return kept


@contextlib.contextmanager
def _capture(log_file, console, verbose: bool):
    if verbose:
        yield
        return
    echo = lambda line: print(line, file=console, flush=True)  # noqa: E731
    with contextlib.redirect_stdout(TaskLog(log_file, echo)):
        yield


def compile_pipeline(out_dir: str | Path) -> Path:
    from kfp import compiler

    from pipelines.kfp_pipeline import servesweep_pipeline

    path = Path(out_dir) / "servesweep_kfp.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(servesweep_pipeline, str(path))
    return path
