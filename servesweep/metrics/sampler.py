"""The background sampling both metric sources share: a thread, rows tagged with the running point."""

from __future__ import annotations

import threading
import time
from typing import Any


class PeriodicSampler:
    """A daemon thread calling `sample()` every `interval_s` while the sweep runs.

    A thread, not a task on the load generator's event loop, so sampling never delays a request.
    `begin` and `end` bracket a point with a sample each, so a point shorter than the interval
    still has its own start and end state; the samples between carry its id too.
    """

    thread_name = "sampler"

    def __init__(self, deployment_id: str, interval_s: float) -> None:
        self.deployment_id = deployment_id
        self.interval_s = interval_s
        self.point_id: str | None = None
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    @property
    def enabled(self) -> bool:
        """False when there is nothing to sample: no thread starts and `begin`/`end` sample nothing."""
        return True

    def begin(self, point_id: str) -> None:
        self.point_id = point_id
        if self.enabled:
            self.sample()

    def end(self) -> None:
        if self.enabled:
            self.sample()
        self.point_id = None

    def row(self, point_id: str | None, now: float, metric: str, labels: dict[str, str],
            value: float) -> dict[str, Any]:
        """One server_metrics row (the table's shape, less run_id); `point_id` as the sample began."""
        return {"deployment_id": self.deployment_id, "point_id": point_id, "scraped_at_unix": now,
                "metric": metric, "labels": labels, "value": value}

    def __enter__(self) -> PeriodicSampler:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
