"""The committed GPU lakes and how `make bench-gpu-report` / `make bench-h200-report` report them: (lake, run
ids, SLO, baseline accelerator). Kept equal to the Makefile's targets by a test."""

from servesweep.spec import SLOSpec
from tests.support.paths import REPO

RESULTS = REPO / "benchmarks" / "results"
H100 = (str(RESULTS / "h100" / "lake"), ["h100-llama3-8b", "h100-llama-1b", "h100-llama3-8b-b256-prefill"],
        SLOSpec(ttft_p99_ms=2000, tpot_p99_ms=150), "nvidia-h100-80gb")
H200 = (str(RESULTS / "h200" / "lake"), ["h200-llama3-8b", "h200-llama3-8b-prefill", "h200-llama3-8b-fp8",
                                         "h200-llama3-8b-fp8-prefill", "h200-llama3-8b-maxseqs",
                                         "h200-llama3-8b-int8", "h200-llama3-8b-w4a16", "h200-llama-1b",
                                         "h200-llama-1b-fp8"],
        SLOSpec(ttft_p99_ms=2000, tpot_p99_ms=100), "nvidia-h200-141gb")
