"""Quantization methods: which the server applies, which the checkpoint carries, and what each writes."""

import json

import pytest

from servesweep.planner.roofline import weight_dtype_for
from servesweep.platform.checkpoint import load_model
from servesweep.platform.local import vllm_command
from servesweep.quantization import CHECKPOINT_SCHEMES, compressed_tensors_config, server_flag
from servesweep.spec import SpecError, parse_spec

_BITS = {"w8a8-fp8": (8, "float", 8), "w8a8-int8": (8, "int", 8), "w4a16": (4, "int", None)}


@pytest.mark.parametrize("method", sorted(CHECKPOINT_SCHEMES))
def test_checkpoint_methods_write_the_compressed_tensors_scheme_vllm_reads(method):
    config = compressed_tensors_config(method)
    group = config["config_groups"]["group_0"]
    weight_bits, weight_type, activation_bits = _BITS[method]
    assert config["quant_method"] == "compressed-tensors"
    assert config["quantization_status"] == "compressed"
    assert config["ignore"] == ["lm_head"] and group["targets"] == ["Linear"]
    assert (group["weights"]["num_bits"], group["weights"]["type"]) == (weight_bits, weight_type)
    activations = group["input_activations"]
    assert (activations and activations["num_bits"]) == activation_bits
    if activations:
        assert activations["dynamic"] and activations["strategy"] == "token"
    if method == "w4a16":
        assert (group["weights"]["strategy"], group["weights"]["group_size"]) == ("group", 128)
        assert config["format"] == "pack-quantized"


def _spec(quantization: str, weights: str = "dummy"):
    return parse_spec({"model": {"preset": "tiny", "weights": weights}, "quantization": quantization,
                       "server": {"kind": "vllm"}})


def test_dummy_weights_get_the_scheme_in_config_json_and_no_server_flag(tmp_path):
    spec = _spec("w4a16")
    info = load_model(spec.model, tmp_path, spec.quantization)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantization_config"] == compressed_tensors_config("w4a16")
    assert not list(tmp_path.glob("*.safetensors")) and info.path == str(tmp_path.resolve())
    command = vllm_command(spec, info.path, 8000, 4)
    assert "--quantization" not in command and command[command.index("--load-format") + 1] == "dummy"


def test_unquantized_and_server_methods_leave_config_json_alone(tmp_path):
    spec = _spec("fp8")
    load_model(spec.model, tmp_path, spec.quantization)
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    command = vllm_command(spec, str(tmp_path), 8000, 4)
    assert command[command.index("--quantization") + 1] == "fp8"
    assert server_flag("none") is None and server_flag("w8a8-int8") is None


def test_a_quantized_checkpoint_on_real_weights_is_accepted():
    # the quantize step makes it with llm-compressor (servesweep.quantize)
    for weights in ("random", "trained"):
        assert _spec("w8a8-int8", weights=weights).quantization == "w8a8-int8"


def test_a_quantized_checkpoint_needs_vllm_in_one_line():
    with pytest.raises(SpecError, match="needs server.kind 'vllm'"):
        parse_spec({"quantization": "w4a16", "server": {"kind": "transformers"}})


@pytest.mark.parametrize(("method", "dtype"), [("none", "bf16"), ("fp8", "fp8"), ("w8a8-fp8", "fp8"),
                                               ("w8a8-int8", "int8"), ("w4a16", "int4"), ("awq", "int4")])
def test_the_planner_charges_each_method_its_weight_bytes(method, dtype):
    assert weight_dtype_for(method, "bfloat16") == dtype
