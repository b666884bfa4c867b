"""Sample the GPUs through NVML while a point runs; rows share the server_metrics table's shape."""

from __future__ import annotations

import time

from servesweep.metrics.sampler import PeriodicSampler
from servesweep.nvml import NvmlUnavailable, device_names, open_nvml

# metric name -> (NVML reader, unit scale). Utilisation is a percentage over NVML's last sample period.
GPU_METRICS = (
    "gpu:utilization_percent",
    "gpu:memory_utilization_percent",
    "gpu:memory_used_bytes",
    "gpu:sm_clock_mhz",
    "gpu:power_watts",
)


GpuUnavailable = NvmlUnavailable  # what the sweep step catches when a host has no GPU to sample


class GpuSampler(PeriodicSampler):
    """Reads NVML every `interval_s` for every visible GPU."""

    thread_name = "gpu-sampler"

    def __init__(self, deployment_id: str, interval_s: float = 0.5) -> None:
        nvml = open_nvml()
        super().__init__(deployment_id, interval_s)
        self._nvml = nvml
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        self._names = device_names(nvml)

    @property
    def gpu_names(self) -> list[str]:
        return list(self._names)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._nvml.nvmlShutdown()

    def sample(self) -> None:
        nvml, now, point_id = self._nvml, time.time(), self.point_id
        for index, handle in enumerate(self._handles):
            utilization = nvml.nvmlDeviceGetUtilizationRates(handle)
            values = (
                float(utilization.gpu),
                float(utilization.memory),
                float(nvml.nvmlDeviceGetMemoryInfo(handle).used),
                float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
                nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # mW -> W
            )
            labels = {"gpu": str(index), "name": self._names[index]}
            self.rows.extend(self.row(point_id, now, metric, labels, value)
                             for metric, value in zip(GPU_METRICS, values, strict=True))
