"""Measured vs roofline on the committed H100 lake: writes benchmarks/results/h100/roofline.md.

    python benchmarks/gpu/compare_roofline.py [--lake benchmarks/results/h100/lake]

Per run and batch size: measured decode tok/s (1000 / TPOT p50) and TTFT p50 next to the planner's
predictions (the lake's `predicted` rows of the same run), the achieved fraction of the H100's HBM
bandwidth at batch 1 (the bytes a decode step must read / measured TPOT / bandwidth), and the
calibration the planner fits from these measurements.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from servesweep.catalog import load_catalog
from servesweep.lake.query import query
from servesweep.planner.calibrate import calibrate
from servesweep.planner.models import get_model
from servesweep.planner.roofline import roofline_terms

ROOT = Path(__file__).resolve().parents[2]

PAIRS = """
select m.run_id, m.model_preset, m.accelerator, m.batch_size, m.input_tokens, m.output_tokens,
       1000 / m.tpot_p50_ms as decode_tps, 1000 / p.tpot_p50_ms as predicted_decode_tps,
       m.ttft_p50_ms, p.ttft_p50_ms as predicted_ttft_ms, m.tpot_p50_ms, p.tpot_p50_ms as predicted_tpot_ms,
       m.output_token_throughput, p.output_token_throughput as predicted_output_tps, m.gpu_utilization_mean
from points m join points p
  on m.run_id = p.run_id and m.batch_size = p.batch_size and m.input_tokens = p.input_tokens
 and m.output_tokens = p.output_tokens and p.source = 'predicted'
where m.source = 'measured' and m.status in ('ok', 'partial')
order by m.run_id, m.input_tokens, m.batch_size
"""


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def hbm_fraction(row: dict) -> float:
    """Time one decode step needs to read its bytes at full bandwidth / the measured step time (TPOT)."""
    accelerator = load_catalog().get(row["accelerator"])
    terms = roofline_terms(get_model(row["model_preset"]), accelerator, 1, row["batch_size"],
                           row["input_tokens"], row["output_tokens"])
    return terms.decode_memory_s / (row["tpot_p50_ms"] / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lake", default=str(ROOT / "benchmarks/results/h100/lake"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/h100/roofline.md"))
    args = parser.parse_args()
    rows = query(args.lake, PAIRS).to_pylist()
    lines = [
        "| run | batch | in/out | decode tok/s (per seq) measured / roofline | TTFT p50 ms measured / roofline "
        "| output tok/s measured / roofline | GPU util % | HBM bandwidth achieved |",
        "| --- | ---: | --- | --- | --- | --- | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['run_id']} | {row['batch_size']} | {row['input_tokens']}/{row['output_tokens']} "
            f"| {_fmt(row['decode_tps'])} / {_fmt(row['predicted_decode_tps'])} "
            f"| {_fmt(row['ttft_p50_ms'])} / {_fmt(row['predicted_ttft_ms'])} "
            f"| {_fmt(row['output_token_throughput'])} / {_fmt(row['predicted_output_tps'], 0)} "
            f"| {_fmt(row['gpu_utilization_mean'], 0)} | {hbm_fraction(row):.1%} |"
        )
    measured = query(args.lake, "select * from points where source = 'measured'")
    calibration = calibrate(measured)
    lines += ["", "Calibration fitted from these points (planner.calibrate; MAPE in %):", "",
              "| server | accelerator | points | prefill efficiency | decode bandwidth efficiency "
              "| TTFT MAPE before / after | TPOT MAPE before / after |",
              "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for group in calibration.groups:
        efficiency = group.efficiency
        lines.append(
            f"| {group.server_kind} | {group.accelerator} | {group.points} | {efficiency.flops_efficiency:.4f} "
            f"| {efficiency.bandwidth_efficiency:.4f} "
            f"| {_fmt(group.ttft_mape_before)} / {_fmt(group.ttft_mape_after)} "
            f"| {_fmt(group.tpot_mape_before)} / {_fmt(group.tpot_mape_after)} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
