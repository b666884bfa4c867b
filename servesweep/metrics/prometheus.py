"""Scrape a server's Prometheus /metrics in the background while a point runs."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

from servesweep.metrics.sampler import PeriodicSampler

# Counters' `_created` timestamps and histogram buckets add rows, not insight; sums and counts stay.
_SKIPPED_SUFFIXES = ("_created", "_bucket")


def parse_samples(text: str, prefixes: tuple[str, ...] = ("vllm:",)) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for every sample whose name starts with one of `prefixes`."""
    samples = []
    for family in text_string_to_metric_families(kept_lines(text, prefixes)):
        if not family.name.startswith(prefixes):
            continue
        for sample in family.samples:
            if sample.name.endswith(_SKIPPED_SUFFIXES):
                continue
            samples.append((sample.name, dict(sample.labels), float(sample.value)))
    return samples


def kept_lines(text: str, prefixes: tuple[str, ...]) -> str:
    """The page less what `parse_samples` drops anyway (other families, buckets, `_created`), before the
    parser sees it: histogram buckets are most of vLLM's page, and parsing costs CPU per line."""
    comments = tuple(f"# {kind} {prefix}" for kind in ("HELP", "TYPE") for prefix in prefixes)
    kept = []
    for line in text.splitlines():
        if line.startswith("#"):
            if line.startswith(comments):
                kept.append(line)
        elif line.startswith(prefixes) and not _sample_name(line).endswith(_SKIPPED_SUFFIXES):
            kept.append(line)
    return "\n".join(kept) + "\n"


def _sample_name(line: str) -> str:
    end = len(line)
    for stop in ("{", " "):
        found = line.find(stop)
        if 0 <= found < end:
            end = found
    return line[:end]


class MetricsSampler(PeriodicSampler):
    """Scrapes `url` (Prometheus text) every `interval_s`, keeping the metrics named with `prefixes`."""

    thread_name = "metrics-sampler"

    def __init__(self, url: str, deployment_id: str, interval_s: float = 0.5,
                 prefixes: Iterable[str] = ("vllm:",)) -> None:
        super().__init__(deployment_id, interval_s)
        self.url = url
        self.prefixes = tuple(prefixes)
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return bool(self.url)  # no URL: the server exports no metrics, so the sweep runs without samples

    def sample(self) -> None:
        point_id = self.point_id
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            self.errors += 1
            return
        now = time.time()
        self.rows.extend(self.row(point_id, now, name, labels, value) for name, labels, value in self.parse(text))

    def parse(self, text: str) -> list[tuple[str, dict[str, str], float]]:
        """The page's samples this sampler keeps (the filtered fast path)."""
        return parse_samples(text, self.prefixes)
