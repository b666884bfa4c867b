"""NVML, opened one way for every reader (the GPU sampler, the run fingerprint, local provisioning).

NVML's init/shutdown are reference-counted by the library, so each reader opens its own session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType


class NvmlUnavailable(RuntimeError):
    """No nvidia-ml-py, no driver or no GPU: the message says which."""


def open_nvml() -> ModuleType:
    """pynvml, initialised; the caller ends the session with `nvmlShutdown()` (or uses `nvml_session`)."""
    try:
        import pynvml
    except ImportError as error:
        raise NvmlUnavailable("nvidia-ml-py is not installed") from error
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        raise NvmlUnavailable(f"NVML: {error}") from error
    module: ModuleType = pynvml
    return module


@contextmanager
def nvml_session() -> Iterator[ModuleType]:
    nvml = open_nvml()
    try:
        yield nvml
    finally:
        nvml.nvmlShutdown()


def text(value: str | bytes) -> str:
    """NVML strings are bytes in older bindings, str in newer ones."""
    return value.decode() if isinstance(value, bytes) else value


def device_names(nvml: ModuleType, indices: range | list[int] | None = None) -> list[str]:
    """Names of the GPUs at `indices` (default: every visible one)."""
    wanted = range(nvml.nvmlDeviceGetCount()) if indices is None else indices
    return [text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))) for i in wanted]
