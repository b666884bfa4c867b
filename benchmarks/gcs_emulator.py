"""Start a real gcp-storage-emulator process (bucket `lake`, in memory), for the tests' GCS fixture and the lake
benchmark's gs:// part alike."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


class EmulatorError(RuntimeError):
    """The emulator is not installed or did not start; the message says which."""


def start_emulator(log: IO[bytes], timeout_s: float = 30.0) -> tuple[subprocess.Popen[bytes], int]:
    """The emulator's process and port, once it accepts connections. Its access log goes to `log`: a pipe
    nobody reads fills up and the (single-threaded) emulator blocks."""
    executable = shutil.which("gcp-storage-emulator", path=str(Path(sys.executable).parent)) or shutil.which(
        "gcp-storage-emulator")
    if executable is None:
        raise EmulatorError("gcp-storage-emulator is not installed: run `make setup` (it is in the dev extra)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    process = subprocess.Popen(
        [executable, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory", "--default-bucket=lake"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise EmulatorError("gcp-storage-emulator did not start") from None
            time.sleep(0.2)
