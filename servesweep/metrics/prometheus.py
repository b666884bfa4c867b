"""Scrape a server's Prometheus /metrics in the background while a point runs."""

from __future__ import annotations

import threading
import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# Counters' `_created` timestamps and histogram buckets add rows, not insight; sums and counts stay.
_SKIPPED_SUFFIXES = ("_created", "_bucket")


def parse_samples(text: str, prefixes: tuple[str, ...] = ("vllm:",)) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for every sample whose name starts with one of `prefixes`."""
    samples = []
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefixes):
            continue
        for sample in family.samples:
            if sample.name.endswith(_SKIPPED_SUFFIXES):
                continue
            samples.append((sample.name, dict(sample.labels), float(sample.value)))
    return samples


class MetricsSampler:
    """A daemon thread scraping `url` every `interval_s`; rows are tagged with the current point id.

    A thread, not a task on the load generator's event loop, so scraping never delays a request.
    """

    def __init__(self, url: str, deployment_id: str, interval_s: float = 0.5, prefixes=("vllm:",)) -> None:
        self.url = url
        self.deployment_id = deployment_id
        self.interval_s = interval_s
        self.prefixes = tuple(prefixes)
        self.point_id: str | None = None
        self.rows: list[dict[str, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-sampler", daemon=True)

    def __enter__(self) -> MetricsSampler:
        if self.url:  # no URL: the server exports no metrics, so the sweep runs without samples
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.scrape()  # a final sample so every point has its end state

    def scrape(self) -> None:
        if not self.url:
            return
        point_id = self.point_id
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            self.errors += 1
            return
        now = time.time()
        for name, labels, value in parse_samples(text, self.prefixes):
            self.rows.append({
                "deployment_id": self.deployment_id, "point_id": point_id, "scraped_at_unix": now,
                "metric": name, "labels": labels, "value": value,
            })

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.scrape()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
