"""Post-training quantization with llm-compressor, run as a script in its own interpreter.

llm-compressor 0.14 pins transformers <= 5.17 and compressed-tensors 0.19, which would replace what vLLM's CPU
build runs with in the project's venv, so it lives in a venv of its own (`make quantize-venv`:
`.venv-quantize`) and servesweep.quantize runs this file there with a JSON request on the command line. It
imports no servesweep module (that venv has none) and prints one JSON line, the result, last.

    python llmc_worker.py '{"source": DIR, "out": DIR, "method": "w4a16", "algorithm": "gptq",
                            "calibration": [TEXT, ...], "max_seq_length": 64, "smoothing_strength": 0.8}'
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def recipe(method: str, algorithm: str, smoothing_strength: float) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    ignore = ["lm_head"]
    if method == "w8a8-fp8":  # weights per channel, activations per token at run time: no calibration needed
        return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=ignore)]
    if method == "w8a8-int8":
        from llmcompressor.modifiers.smoothquant import SmoothQuantModifier

        return [SmoothQuantModifier(smoothing_strength=smoothing_strength),
                GPTQModifier(targets="Linear", scheme="W8A8", ignore=ignore)]
    if method == "w4a16":
        if algorithm == "awq":
            from llmcompressor.modifiers.awq import AWQModifier

            return [AWQModifier(targets="Linear", scheme="W4A16", ignore=ignore)]
        return [GPTQModifier(targets="Linear", scheme="W4A16", ignore=ignore)]
    raise SystemExit(f"error: no llm-compressor recipe for method {method!r}")


def main(request: dict[str, Any]) -> dict[str, Any]:
    import llmcompressor
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(1)  # one arithmetic order, whatever the machine
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(request["source"], dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(request["source"])
    texts = list(request["calibration"])
    kwargs: dict[str, Any] = {}
    if request["method"] != "w8a8-fp8":
        kwargs = {"dataset": Dataset.from_dict({"text": texts}), "num_calibration_samples": len(texts),
                  "max_seq_length": int(request["max_seq_length"]), "shuffle_calibration_samples": False}
    oneshot(model=model, tokenizer=tokenizer,
            recipe=recipe(request["method"], request["algorithm"], float(request["smoothing_strength"])), **kwargs)
    model.save_pretrained(request["out"], save_compressed=True)
    tokenizer.save_pretrained(request["out"])
    return {"tool": "llmcompressor", "tool_version": llmcompressor.__version__,
            "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    result = main(json.loads(sys.argv[1]))
    print(json.dumps(result))
