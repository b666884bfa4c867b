"""The planner's predictions for the tensor-parallel specs (not measurements): a Markdown table per workload.

    python benchmarks/gpu/tp_predictions.py

For each tensor-parallel spec (specs/h200-tp-*.yaml, and specs/h200-llama3-8b.yaml for one GPU) at every
tensor-parallel size an a3-ultragpu-8g offers, the plan step's prediction (`components.plan.plan`: the
shipped vLLM H200 calibration of the weight dtype, fitted on one GPU, plus the all-reduce term of
servesweep/planner/roofline.py) at batches 1, 64 and 256: TPOT, output tokens/s per GPU and $ per million
output tokens (a TP-n server is charged n/8 of the machine). A size whose GPUs cannot hold the model shows
the planner's reason; a batch its KV cache cannot hold, how many sequences it does.
"""

from __future__ import annotations

from pathlib import Path

from components.plan import plan
from servesweep.spec import BenchmarkSpec, load_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = ("h200-llama3-8b", "h200-tp-llama3-70b", "h200-tp-llama3-70b-fp8")
TP_SIZES = (1, 2, 4, 8)
BATCHES = (1, 64, 256)
WORKLOADS = ((128, 128), (2048, 128))


def variant(spec: BenchmarkSpec, tp: int, input_tokens: int, output_tokens: int) -> BenchmarkSpec:
    """The spec at `tp` GPUs, one workload, the table's batches."""
    return spec.with_fields(
        "tp_predictions", accelerator={"type": spec.accelerator.type, "count": tp},
        workloads=[{"input_tokens": input_tokens, "output_tokens": output_tokens}],
        sweep=spec.sweep.model_dump(mode="json") | {"batch_sizes": list(BATCHES)},
    )


def cells(spec: BenchmarkSpec) -> list[str]:
    result = plan(spec)
    if not result.placements[0].fit.fits:
        return [result.placements[0].fit.reason] + ["-"] * 4
    by_batch = {p.batch_size: p for p in result.predictions}
    gpus = spec.accelerator.count
    row = [f"{by_batch[1].tpot_ms:.1f}"]
    for batch in BATCHES:
        p = by_batch[batch]
        row.append(f"{p.output_token_throughput / gpus:,.0f}" if p.fits else f"KV holds {p.max_sequences}")
    last = by_batch[BATCHES[-1]]
    row.append(f"{last.usd_per_million_output_tokens:.3f}" if last.fits else "-")
    return row


def table(input_tokens: int, output_tokens: int) -> list[str]:
    lines = [
        f"**{input_tokens}/{output_tokens}** (predicted)",
        "",
        "| model, weights | TP | TPOT ms, batch 1 | out tok/s per GPU, batch 1 | batch 64 | batch 256 "
        "| $/M out tokens, batch 256 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in SPECS:
        spec = load_spec(ROOT / "specs" / f"{name}.yaml").with_run_id()
        weights = "fp8" if spec.quantization == "fp8" else "bf16"
        for tp in TP_SIZES:
            row = cells(variant(spec, tp, input_tokens, output_tokens))
            lines.append(f"| {spec.model.preset}, {weights} | {tp} | " + " | ".join(row) + " |")
    return lines


def main() -> None:
    for input_tokens, output_tokens in WORKLOADS:
        print("\n".join(table(input_tokens, output_tokens)) + "\n")


if __name__ == "__main__":
    main()
