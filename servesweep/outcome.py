"""How a run ended, as one exit code: the CLI's, and the pipelines' last step's (check-points).

    0    every point was measured ('partial' points, with some failed requests, count as measured)
    1    crash: a step failed for another reason (its log says why)
    2    bad input: the spec or the command line; nothing ran
    3    partial: some points failed, the others were measured
    4    nothing measured: every point failed
    130  interrupted (Ctrl-C)

Codes 3 and 4 come after the lake is written: it holds the measured points and the failed ones,
each with its failure_reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

OK, CRASH, BAD_INPUT, PARTIAL, NOTHING_MEASURED, INTERRUPTED = 0, 1, 2, 3, 4, 130


@dataclass(frozen=True)
class Outcome:
    """The measured points of a run, and the reason of each one that failed."""

    total: int
    failed: dict[str, str] = field(default_factory=dict)  # point id -> failure reason

    @property
    def code(self) -> int:
        if not self.failed and self.total:
            return OK
        return PARTIAL if len(self.failed) < self.total else NOTHING_MEASURED

    @property
    def message(self) -> str:
        if self.code == OK:
            return f"all {self.total} points measured"
        if not self.total:
            return "no point was measured: the run has no measured points"
        by_reason: dict[str, list[str]] = {}
        for point_id, reason in sorted(self.failed.items()):
            by_reason.setdefault(reason, []).append(point_id)
        reasons = "; ".join(f"{reason[:300]} ({', '.join(points)})" for reason, points in by_reason.items())
        return f"{len(self.failed)} of {self.total} points failed: {reasons}"


def run_outcome(points: Iterable[Mapping[str, Any]]) -> Outcome:
    """The outcome of a run from its `points` rows (predicted rows are ignored)."""
    measured = [p for p in points if p.get("source", "measured") == "measured"]
    failed = {p["point_id"]: p.get("failure_reason") or "failed" for p in measured if p["status"] == "failed"}
    return Outcome(total=len(measured), failed=failed)
