"""servesweep/nvml.py, the one way NVML is opened, and its three readers (the GPU sampler, the run fingerprint,
local provisioning) on a fake pynvml: each reader's session is opened and shut down once, a missing library or
driver is NvmlUnavailable, and NVML's bytes (older bindings) read as text."""

from __future__ import annotations

import sys
from types import ModuleType, SimpleNamespace

import pytest

from servesweep.fingerprint import nvml_facts
from servesweep.metrics.gpu import GPU_METRICS, GpuSampler
from servesweep.nvml import NvmlUnavailable, open_nvml
from servesweep.platform.local import local_gpus


class NVMLError(Exception):
    pass


def fake_pynvml(names: list[bytes | str], init_error: str | None = None) -> ModuleType:
    """A pynvml with `names` as its GPUs; `calls` counts the session's opens and closes."""
    nvml = ModuleType("pynvml")
    calls = {"init": 0, "shutdown": 0}

    def init() -> None:
        if init_error:
            raise NVMLError(init_error)
        calls["init"] += 1

    def shutdown() -> None:
        calls["shutdown"] += 1

    nvml.__dict__.update(
        calls=calls, NVMLError=NVMLError, NVML_CLOCK_SM=1, nvmlInit=init, nvmlShutdown=shutdown,
        nvmlDeviceGetCount=lambda: len(names), nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda handle: names[handle],
        nvmlSystemGetDriverVersion=lambda: b"570.86.15", nvmlSystemGetCudaDriverVersion=lambda: 12040,
        nvmlDeviceGetUtilizationRates=lambda handle: SimpleNamespace(gpu=90 + handle, memory=40),
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(used=2**30),
        nvmlDeviceGetClockInfo=lambda handle, clock: 1980,
        nvmlDeviceGetPowerUsage=lambda handle: 350_000,  # mW
    )
    return nvml


@pytest.fixture
def two_h100s(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    nvml = fake_pynvml([b"NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return nvml


def test_no_library_or_no_driver_is_nvml_unavailable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with pytest.raises(NvmlUnavailable, match="nvidia-ml-py is not installed"):
        open_nvml()
    assert local_gpus() == []
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], init_error="Driver Not Loaded"))
    with pytest.raises(NvmlUnavailable, match="NVML: Driver Not Loaded"):
        nvml_facts(None, 1)
    with pytest.raises(NvmlUnavailable):
        GpuSampler("d")


def test_local_provisioning_reads_the_names_in_one_session(two_h100s: ModuleType):
    assert local_gpus() == ["NVIDIA H100 80GB HBM3"] * 2
    assert two_h100s.calls == {"init": 1, "shutdown": 1}


def test_the_fingerprint_reads_the_servers_gpus_and_the_driver(two_h100s: ModuleType):
    facts = nvml_facts([1, 5], 2)  # 5 is not visible: not counted
    assert facts == {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "gpu_driver_version": "570.86.15",
                     "cuda_driver_version": "12.4"}
    assert two_h100s.calls == {"init": 1, "shutdown": 1}


def test_the_sampler_keeps_its_session_open_until_it_exits(two_h100s: ModuleType):
    sampler = GpuSampler("llama-b8", interval_s=60.0)
    assert sampler.gpu_names == ["NVIDIA H100 80GB HBM3"] * 2
    sampler.begin("p1")
    assert two_h100s.calls == {"init": 1, "shutdown": 0}
    rows = {(r["labels"]["gpu"], r["metric"]): r["value"] for r in sampler.rows}
    assert len(rows) == 2 * len(GPU_METRICS)
    assert rows[("1", "gpu:utilization_percent")] == 91.0 and rows[("0", "gpu:power_watts")] == 350.0
    assert {r["point_id"] for r in sampler.rows} == {"p1"}
    sampler.__exit__(None, None, None)
    assert two_h100s.calls == {"init": 1, "shutdown": 1}
