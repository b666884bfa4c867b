"""Sample the GPUs through NVML while a point runs; rows share the server_metrics table's shape."""

from __future__ import annotations

import threading
import time
from typing import Any

# metric name -> (NVML reader, unit scale). Utilisation is a percentage over NVML's last sample period.
GPU_METRICS = (
    "gpu:utilization_percent",
    "gpu:memory_utilization_percent",
    "gpu:memory_used_bytes",
    "gpu:sm_clock_mhz",
    "gpu:power_watts",
)


class GpuUnavailable(RuntimeError):
    pass


class GpuSampler:
    """A daemon thread reading NVML every `interval_s` for every visible GPU."""

    def __init__(self, deployment_id: str, interval_s: float = 0.5) -> None:
        try:
            import pynvml
        except ImportError as error:
            raise GpuUnavailable("nvidia-ml-py is not installed") from error
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            raise GpuUnavailable(f"NVML: {error}") from error
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self._names = [_text(pynvml.nvmlDeviceGetName(h)) for h in self._handles]
        self.deployment_id = deployment_id
        self.interval_s = interval_s
        self.point_id: str | None = None
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)

    @property
    def gpu_names(self) -> list[str]:
        return list(self._names)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
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
            self.rows.extend(
                {"deployment_id": self.deployment_id, "point_id": point_id, "scraped_at_unix": now,
                 "metric": metric, "labels": labels, "value": value}
                for metric, value in zip(GPU_METRICS, values, strict=True)
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
