"""Several quantization variants in one local command: one pipeline run per variant, in sequence.

The spec's `variants` become one spec each (BenchmarkSpec.variant_specs: the baseline 'none' first, run ids
`<run_id>-<variant>`). Every run loads the same source checkpoint through the load-model step's cache (a
trained model is trained once) and writes its own lake partition. A variant that crashes does not stop the
others: the summary says which, and the exit code is the worst of them (a crash over failed points).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.local import PipelineFailed, run_locally
from servesweep.lake.query import query
from servesweep.outcome import CRASH, NOTHING_MEASURED, OK, PARTIAL, run_outcome
from servesweep.runlock import LockError, run_lock
from servesweep.secrets import hand_over, mask, secret_values
from servesweep.spec import BenchmarkSpec


@dataclass(frozen=True)
class VariantRun:
    """How one variant's run ended: its exit code (servesweep.outcome) and one line saying why."""

    variant: str
    run_id: str
    code: int
    message: str
    measured: int = 0  # measured points (ok or partial)
    failed: int = 0


def run_variants(spec: BenchmarkSpec, pipeline_root: str | Path,
                 echo: Callable[[str], None] = print) -> list[VariantRun]:
    """Run every variant of `spec` (with a concrete run id) locally, the baseline first; KeyboardInterrupt
    propagates (each run stops its own servers first)."""
    runs = []
    for variant in spec.variant_specs():
        echo(f"variant {variant.quantization}: run {variant.run_id}")
        runs.append(_run_one(variant, pipeline_root))
        echo(f"variant {variant.quantization}: {runs[-1].message}")
    return runs


def _run_one(spec: BenchmarkSpec, pipeline_root: str | Path) -> VariantRun:
    secrets = secret_values(spec.server.env)
    try:
        with run_lock(spec.lake_uri, spec.run_id), hand_over(spec.server.env):
            run_locally(spec, pipeline_root)
    except (LockError, PipelineFailed) as error:
        first_line = mask(str(error), secrets).splitlines()[0]
        return VariantRun(spec.quantization, spec.run_id, CRASH, f"crashed: {first_line}")
    points = query(spec.lake_uri, f"SELECT point_id, source, status, failure_reason FROM points "
                                  f"WHERE run_id = '{spec.run_id}' AND source = 'measured'").to_pylist()
    outcome = run_outcome(points)
    return VariantRun(spec.quantization, spec.run_id, outcome.code, outcome.message,
                      measured=outcome.total - len(outcome.failed), failed=len(outcome.failed))


def overall_code(runs: list[VariantRun]) -> int:
    """A crash if any variant crashed; else as one run of all their points: ok, some failed, or none measured."""
    if any(run.code == CRASH for run in runs):
        return CRASH
    measured, failed = sum(run.measured for run in runs), sum(run.failed for run in runs)
    if not failed and measured:
        return OK
    return NOTHING_MEASURED if not measured else PARTIAL


def summary_rows(lake_uri: str, runs: list[VariantRun]) -> list[dict[str, object]]:
    """One row per variant: how its checkpoint was made, its weight bytes, its best measured throughput and
    how the run ended (a crashed run has no lake rows: its quantize columns stay empty)."""
    ids = ", ".join(f"'{run.run_id}'" for run in runs)
    made = {row["run_id"]: row for row in query(lake_uri, f"""
        SELECT r.run_id, r.quantize_how, r.quantize_cached, r.weight_bytes,
               max(p.output_token_throughput) AS best_tokens_per_s
        FROM runs r LEFT JOIN points p ON p.run_id = r.run_id AND p.source = 'measured' AND p.status != 'failed'
        WHERE r.run_id IN ({ids}) GROUP BY ALL""").to_pylist()} if any(run.code != CRASH for run in runs) else {}
    return [{"variant": run.variant, "run id": run.run_id, "made": made.get(run.run_id, {}).get("quantize_how"),
             "cached": made.get(run.run_id, {}).get("quantize_cached"),
             "weight bytes": made.get(run.run_id, {}).get("weight_bytes"),
             "best output tok/s": made.get(run.run_id, {}).get("best_tokens_per_s"), "outcome": run.message}
            for run in runs]
