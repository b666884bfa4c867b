"""Lakes for the analysis tests: a real spine run (tests/data) plus rows written through the lake writer.

Prices come from a catalog override with round numbers so expected answers can be checked by hand:
cpu $0.25/h, nvidia-l4 $0.50/h, nvidia-tesla-a100 $2.00/h (1 GPU each).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from servesweep.catalog import Catalog, load_catalog
from servesweep.lake import store
from tests.support.paths import TESTS

SPINE_POINTS = TESTS / "data" / "spine_points.json"
ROUND_PRICES = """
catalog_version: test-round-prices
accelerators:
  cpu:
    machines: [{machine_type: n2-standard-8, price_per_hour: 0.25}]
  nvidia-l4:
    machines: [{machine_type: g2-standard-4, price_per_hour: 0.5}]
  nvidia-tesla-a100:
    machines: [{machine_type: a2-highgpu-1g, price_per_hour: 2.0}]
"""
OUTPUT_TOKENS = 256


def round_price_catalog(tmp_path: Path) -> Catalog:
    path = tmp_path / "round-prices.yaml"
    path.write_text(ROUND_PRICES)
    return load_catalog(path)


def spine_rows() -> list[dict[str, Any]]:
    """The points rows of a real local run (cpu, client_concurrency, measured and predicted)."""
    rows = json.loads(SPINE_POINTS.read_text())
    for row in rows:
        row["started_at"] = datetime.fromisoformat(row["started_at"]) if row["started_at"] else None
        row.pop("schema_version")
    return rows


def point(run_id: str, accelerator: str, batch: int, throughput: float | None, ttft_p99: float, tpot_p99: float, *,
          quantization: str = "none", source: str = "measured", status: str = "ok", model: str = "llama3-8b",
          input_tokens: int = 1024, output_tokens: int = OUTPUT_TOKENS, **extra: Any) -> dict[str, Any]:
    """A points row. p50s are 0.8 x the p99s; means equal the p50s; E2E = TTFT + (output - 1) x TPOT."""
    ttft_p50, tpot_p50 = 0.8 * ttft_p99, 0.8 * tpot_p99
    e2e_p50, e2e_p99 = ttft_p50 + (output_tokens - 1) * tpot_p50, ttft_p99 + (output_tokens - 1) * tpot_p99
    row = {
        "run_id": run_id, "point_id": f"{source}-{quantization}-b{batch}", "deployment_id": f"{run_id}-d",
        "source": source, "status": status, "model_name": model, "quantization": quantization,
        "server_kind": "vllm", "accelerator": accelerator, "accelerator_count": 1,
        "sweep_mode": "predicted" if source == "predicted" else "client_concurrency", "batch_size": batch,
        "input_tokens": input_tokens, "output_tokens": output_tokens, "output_token_throughput": throughput,
        "ttft_p50_ms": ttft_p50, "ttft_p99_ms": ttft_p99, "ttft_mean_ms": ttft_p50,
        "tpot_p50_ms": tpot_p50, "tpot_p99_ms": tpot_p99, "tpot_mean_ms": tpot_p50,
        "e2e_p50_ms": e2e_p50, "e2e_p99_ms": e2e_p99, "e2e_mean_ms": e2e_p50,
    }
    return {**row, **extra}


def write_points(lake: str, rows: list[dict[str, Any]]) -> None:
    """Write rows through the lake writer, one run at a time."""
    for run_id in sorted({row["run_id"] for row in rows}):
        store.write_run(lake, run_id, {"points": store.to_table("points", [r for r in rows if r["run_id"] == run_id])})


def fleet_rows() -> list[dict[str, Any]]:
    """Four runs of llama3-8b 1024/256 on three accelerators, two quantizations, with failures and predictions.

    Against the SLO p99 TTFT <= 500 ms, p99 TPOT <= 50 ms:
    - l4 (none): batches 1-8 meet, 16 misses both bounds -> ideal 8 (180 tok/s); its best tokens/$ overall is
      batch 16 (200 tok/s). Batch 32 failed (left out). Two predicted points ride along.
    - a100 (none): every batch meets; 16 and 32 tie at 900 tok/s -> ideal 16.
    - a100-int8 (int8): 1000 tok/s at batch 16 misses TTFT -> ideal 4 (280 tok/s).
    - cpu: even batch 1 misses -> no ideal batch.
    """
    l4 = [point("l4", "nvidia-l4", b, t, ttft, tpot) for b, t, ttft, tpot in
          [(1, 30, 100, 30), (2, 55, 120, 32), (4, 100, 150, 35), (8, 180, 300, 40), (16, 200, 900, 60)]]
    l4 += [point("l4", "nvidia-l4", 32, None, 0, 0, status="failed", failure_reason="server out of memory"),
           point("l4", "nvidia-l4", 1, 35, 90, 28, source="predicted"),
           point("l4", "nvidia-l4", 8, 220, 250, 36, source="predicted")]
    a100 = [point("a100", "nvidia-tesla-a100", b, t, ttft, tpot) for b, t, ttft, tpot in
            [(1, 60, 50, 15), (2, 110, 60, 16), (4, 200, 70, 18), (8, 400, 90, 20), (16, 900, 150, 25),
             (32, 900, 200, 30)]]
    int8 = [point("a100-int8", "nvidia-tesla-a100", b, t, ttft, tpot, quantization="int8") for b, t, ttft, tpot in
            [(1, 80, 40, 12), (4, 280, 60, 14), (16, 1000, 600, 22)]]
    cpu = [point("cpu-slow", "cpu", b, t, ttft, tpot) for b, t, ttft, tpot in [(1, 5, 5000, 80), (2, 6, 9000, 120)]]
    return l4 + a100 + int8 + cpu
