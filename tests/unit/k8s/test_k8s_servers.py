"""Server command lines per server kind x quantization x tensor parallel size."""

from __future__ import annotations

import itertools

import pytest
import yaml

from servesweep.k8s.servers import SERVERS, TRITON_MODEL_NAME, ModelRef, ServerOptions, render_server

KINDS = ["vllm", "tgi", "triton-trtllm", "jetstream", "sglang", "transformers"]
QUANTIZATIONS = ["none", "fp8", "int8", "awq", "gptq"]
TP_SIZES = [1, 2, 8]
IMAGES = {"transformers": "registry.example/servesweep/transformers-serve:5.19.0"}
HUB_MODEL = ModelRef("meta-llama/Llama-3.1-8B-Instruct", "llama3-8b")

SUPPORTED = {
    "vllm": {"none", "fp8", "int8", "awq", "gptq"},
    "tgi": {"none", "fp8", "int8", "awq", "gptq"},
    "sglang": {"none", "fp8", "int8", "awq", "gptq"},
    "triton-trtllm": {"none", "fp8", "awq"},
    "jetstream": {"none", "int8"},
    "transformers": {"none", "int8"},
}
QUANT_ARGS = {
    ("vllm", "fp8"): ["--quantization", "fp8"],
    ("vllm", "int8"): ["--quantization", "compressed-tensors"],
    ("vllm", "awq"): ["--quantization", "awq_marlin"],
    ("vllm", "gptq"): ["--quantization", "gptq_marlin"],
    ("tgi", "fp8"): ["--quantize", "fp8"],
    ("tgi", "int8"): ["--quantize", "eetq"],
    ("tgi", "awq"): ["--quantize", "awq"],
    ("tgi", "gptq"): ["--quantize", "gptq"],
    ("sglang", "fp8"): ["--quantization", "fp8"],
    ("sglang", "int8"): ["--quantization", "w8a8_int8"],
    ("jetstream", "int8"): ["--quantize_weights=True", "--quantize_type=int8_per_channel"],
    ("transformers", "int8"): ["--quantization", "bnb-8bit"],
}
ONLINE = {("vllm", "fp8"), ("tgi", "fp8"), ("tgi", "int8"), ("sglang", "fp8"), ("jetstream", "int8"),
          ("transformers", "int8")}
# Per kind: flag for TP, for the batch cap, for the memory fraction, for the context length.
KNOB_FLAGS = {
    "vllm": ("--tensor-parallel-size", "--max-num-seqs", "--gpu-memory-utilization", "--max-model-len"),
    "tgi": ("--num-shard", "--max-batch-size", "--cuda-memory-fraction", "--max-total-tokens"),
    "sglang": ("--tp-size", "--max-running-requests", "--mem-fraction-static", "--context-length"),
}


def argv(rendered) -> list[str]:
    return [*rendered.main.command, *rendered.main.args]


def value_of(args: list[str], flag: str) -> str:
    for index, arg in enumerate(args):
        if arg == flag:
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {args}")


def contains_run(args: list[str], run: list[str]) -> bool:
    return any(args[i : i + len(run)] == run for i in range(len(args) - len(run) + 1))


def options(quantization: str, tp: int, kind: str) -> ServerOptions:
    max_batch = None if kind == "transformers" else 64
    return ServerOptions(quantization=quantization, tensor_parallel=tp, max_batch=max_batch,
                         gpu_memory_fraction=0.85, max_model_len=2048)


GRID = list(itertools.product(KINDS, QUANTIZATIONS, TP_SIZES))


def test_registry_has_every_kind():
    assert sorted(SERVERS) == sorted(KINDS)


@pytest.mark.parametrize(("kind", "quantization", "tp"), GRID)
def test_render_or_refuse(kind: str, quantization: str, tp: int):
    opts = options(quantization, tp, kind)
    if quantization not in SUPPORTED[kind]:
        with pytest.raises(ValueError, match=rf"{kind}.*{quantization}"):
            render_server(kind, HUB_MODEL, opts, IMAGES)
        return
    if kind == "transformers" and tp > 1:
        with pytest.raises(ValueError, match="tensor parallelism"):
            render_server(kind, HUB_MODEL, opts, IMAGES)
        return
    rendered = render_server(kind, HUB_MODEL, opts, IMAGES)
    args = argv(rendered)
    assert rendered.main.image
    assert args, "a server needs a command line"
    _check_quantization(kind, quantization, rendered, args)
    _check_knobs(kind, tp, rendered, args)


def _check_quantization(kind: str, quantization: str, rendered, args: list[str]) -> None:
    expected = QUANT_ARGS.get((kind, quantization))
    if expected:
        assert contains_run(args, expected), f"{expected} missing from {args}"
    else:
        assert not any(a.startswith(("--quantiz", "--quantize_")) for a in args), args
    if quantization == "none":
        assert rendered.quantization_source == "none"
    elif (kind, quantization) in ONLINE:
        assert rendered.quantization_source == "online"
    else:
        assert rendered.quantization_source == "checkpoint"


def _check_knobs(kind: str, tp: int, rendered, args: list[str]) -> None:
    if kind in KNOB_FLAGS:
        tp_flag, batch_flag, memory_flag, length_flag = KNOB_FLAGS[kind]
        assert value_of(args, tp_flag) == str(tp)
        assert value_of(args, batch_flag) == "64"
        assert value_of(args, memory_flag) == "0.85"
        assert value_of(args, length_flag) == "2048"
        assert rendered.ignored == ()
    elif kind == "triton-trtllm":
        config = triton_config(args)
        assert config["tensor_parallel_size"] == tp
        assert config["max_batch_size"] == 64
        assert config["max_seq_len"] == 2048
        assert config["kv_cache_config"] == {"free_gpu_memory_fraction": 0.85}
        assert config["triton_config"] == {"max_batch_size": 0, "decoupled": True}
    elif kind == "jetstream":
        assert value_of(args, "--override_batch_size") == "64"
        assert set(rendered.ignored) == {"gpu_memory_fraction", "max_model_len"}
    elif kind == "transformers":
        assert "--continuous-batching" in args
        assert value_of(args, "--cb-max-memory-percent") == "0.85"
        assert rendered.ignored == ("max_model_len",)


def triton_config(args: list[str]) -> dict:
    script = args[-1]
    body = script.split("<<'SERVESWEEP_YAML'\n", 1)[1].split("\nSERVESWEEP_YAML", 1)[0]
    return yaml.safe_load(body)


def test_triton_writes_model_yaml_and_serves_the_llmapi_model():
    rendered = render_server("triton-trtllm", HUB_MODEL, ServerOptions(tensor_parallel=2))
    args = argv(rendered)
    assert args[:2] == ["bash", "-c"]
    config = triton_config(args)
    assert config["model"] == HUB_MODEL.location
    assert config["backend"] == "pytorch"
    assert "max_batch_size" not in config  # no cap asked: the engine's default
    assert "exec tritonserver --model-repository=" in args[-1]
    assert rendered.served_name == TRITON_MODEL_NAME
    assert (rendered.port, rendered.metrics_port, rendered.api) == (8000, 8002, "triton-generate")


def test_hub_model_name_and_revision_reach_the_server():
    model = ModelRef("Qwen/Qwen2.5-7B-Instruct", "qwen", revision="a1b2c3d")
    assert value_of(argv(render_server("vllm", model, ServerOptions())), "--revision") == "a1b2c3d"
    assert value_of(argv(render_server("vllm", model, ServerOptions())), "--served-model-name") == "qwen"
    assert value_of(argv(render_server("sglang", model, ServerOptions())), "--model-path") == model.location
    assert value_of(argv(render_server("tgi", model, ServerOptions())), "--model-id") == model.location
    assert triton_config(argv(render_server("triton-trtllm", model, ServerOptions())))["revision"] == "a1b2c3d"
    transformers = argv(render_server("transformers", model, ServerOptions(), IMAGES))
    assert "Qwen/Qwen2.5-7B-Instruct@a1b2c3d" in transformers


def test_no_batch_cap_leaves_the_server_default():
    for kind in ("vllm", "tgi", "sglang"):
        args = argv(render_server(kind, HUB_MODEL, ServerOptions(max_batch=None)))
        assert KNOB_FLAGS[kind][1] not in args
    jetstream = argv(render_server("jetstream", HUB_MODEL, ServerOptions(max_batch=None)))
    assert value_of(jetstream, "--override_batch_size") == "32"


def test_tgi_raises_prefill_budget_for_long_contexts():
    short = argv(render_server("tgi", HUB_MODEL, ServerOptions(max_model_len=4096)))
    long = argv(render_server("tgi", HUB_MODEL, ServerOptions(max_model_len=16384)))
    assert "--max-batch-prefill-tokens" not in short
    assert value_of(long, "--max-batch-prefill-tokens") == "16383"
    assert value_of(long, "--max-input-tokens") == "16383"


def test_transformers_refuses_a_batch_cap_and_needs_an_image():
    with pytest.raises(ValueError, match="no flag capping requests"):
        render_server("transformers", HUB_MODEL, ServerOptions(max_batch=8), IMAGES)
    with pytest.raises(ValueError, match=r"gke.images\['transformers'\]"):
        render_server("transformers", HUB_MODEL, ServerOptions())


def test_jetstream_needs_the_hub_and_no_revision():
    with pytest.raises(ValueError, match="hub only"):
        render_server("jetstream", ModelRef("/models/llama", "llama", from_hub=False), ServerOptions())
    with pytest.raises(ValueError, match="revision"):
        render_server("jetstream", ModelRef("google/gemma-7b-it", "g", revision="main"), ServerOptions())
    rendered = render_server("jetstream", HUB_MODEL, ServerOptions())
    assert [c.name for c in rendered.sidecars] == ["jetstream-http"]
    assert rendered.token_delivery == "file"
    assert rendered.accelerator_kind == "tpu"


def test_local_paths_for_gcs_models():
    model = ModelRef("/models/llama3-8b", "llama3-8b", from_hub=False)
    assert argv(render_server("vllm", model, ServerOptions()))[2] == "/models/llama3-8b"


def test_image_override_wins():
    rendered = render_server("vllm", HUB_MODEL, ServerOptions(), {"vllm": "mirror.example/vllm:pinned"})
    assert rendered.main.image == "mirror.example/vllm:pinned"


def test_unknown_kind_and_bad_options():
    with pytest.raises(ValueError, match="unknown server kind 'ollama'"):
        render_server("ollama", HUB_MODEL, ServerOptions())
    with pytest.raises(ValueError, match="tensor_parallel"):
        ServerOptions(tensor_parallel=0)
    with pytest.raises(ValueError, match="gpu_memory_fraction"):
        ServerOptions(gpu_memory_fraction=1.5)
    with pytest.raises(ValueError, match="max_batch"):
        ServerOptions(max_batch=0)


def test_every_kind_declares_health_and_metrics():
    for kind, info in SERVERS.items():
        assert info.readiness_path.startswith("/"), kind
        assert (info.metrics_port is None) == (info.metrics_path is None) == (info.metric_prefix is None), kind
