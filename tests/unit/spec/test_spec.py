from pathlib import Path

import pytest
from typer.testing import CliRunner

from servesweep.cli import app
from servesweep.spec import (
    BenchmarkSpec,
    SpecError,
    load_spec,
    parse_spec,
    spec_from_json,
    spec_from_params,
    spec_to_params,
)
from tests.support.paths import REPO


def test_default_spec_file_loads():
    spec = load_spec(REPO / "specs" / "local.yaml")
    assert spec.sweep.batch_sizes == [1, 2, 4, 8]
    assert spec.workloads[0].input_tokens == 128


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"sweep": {"batch_sizes": [0, 2], "requests_per_point": 4}}, "sweep.batch_sizes", ">= 1"),
        ({"sweep": {"batch_sizes": [2, 2], "requests_per_point": 4}}, "sweep.batch_sizes", "repeat"),
        ({"sweep": {"batch_sizes": [1]}}, "sweep", "requests_per_point, rounds_per_point or duration_s"),
        ({"sweep": {"batch_sizes": [1], "requests_per_point": 1, "load": "open"}}, "sweep", "one request rate"),
        ({"workloads": [{"input_tokens": 1000, "output_tokens": 100}]}, "(top level)", "max_model_len"),
        ({"model": {"preset": "gpt-9"}}, "model.preset", "unknown preset"),
        ({"model": {"shape": {"hidden_size": 100, "num_attention_heads": 3}}}, "model.shape", "divisible"),
        ({"accelerator": {"type": "tpu-v9"}}, "accelerator.type", "Input should be"),
        ({"run_id": "has/slash"}, "run_id", "letters, digits"),
        ({"sweep": {"modes": ["client_concurrency"] * 2, "requests_per_point": 4}}, "sweep.modes", "repeat"),
        ({"quantisation": "fp8"}, "quantisation", "unknown field"),
        ({"model": {"weights": "dummy"}, "server": {"kind": "transformers"}}, "(top level)", "needs server.kind"),
        ({"accelerator": {"type": "nvidia-l4", "count": 2, "device_ids": [0]}}, "accelerator", "2 distinct GPU"),
        ({"accelerator": {"type": "cpu", "device_ids": [0]}}, "accelerator", "GPU accelerators"),
        ({"workloads": [{"input_tokens": 8, "output_tokens": 8}] * 2}, "(top level)", "repeat"),
        ({"workloads": [{"input_tokens": 8, "output_tokens": 8, "requests_per_point": 0}]},
         "workloads.0.requests_per_point", "greater than or equal to 1"),
    ],
)
def test_bad_spec_names_the_field(data, field, message):
    with pytest.raises(SpecError) as raised:
        parse_spec(data, "test")
    text = str(raised.value)
    assert text.startswith("invalid benchmark spec (test): ") and "\n" not in text  # one problem, one line
    assert f" {field}: " in text and message in text


def test_spec_errors_are_one_message_for_non_mappings(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(path)
    path.write_text("a: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="malformed"):
        spec_from_json("{nope")


def test_cli_reports_a_bad_spec_without_a_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sweep:\n  batch_sizes: [-1]\n  requests_per_point: 2\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "sweep.batch_sizes" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_params_round_trip_keeps_the_whole_spec():
    spec = load_spec(REPO / "specs" / "local.yaml").model_copy(update={"run_id": "abc"})
    params = spec_to_params(spec).model_dump()
    assert spec_from_params(params) == spec


def test_typed_params_alone_make_a_spec():
    spec = spec_from_params({"batch_sizes": [1, 8], "input_tokens": 32, "output_tokens": 16,
                             "requests_per_point": 3, "slo_ttft_p99_ms": 250.0})
    assert spec.sweep.batch_sizes == [1, 8]
    assert spec.workloads[0].input_tokens == 32 and spec.sweep.requests_per_point == 3
    assert spec.slo.ttft_p99_ms == 250.0 and spec.slo.tpot_p99_ms is None


def test_a_typed_param_edited_in_the_ui_overrides_spec_yaml():
    spec = load_spec(REPO / "specs" / "local.yaml")
    params = spec_to_params(spec).model_dump()
    params["batch_sizes"] = [3]
    params["requests_per_point"] = 5
    merged = spec_from_params(params)
    assert merged.sweep.batch_sizes == [3] and merged.sweep.requests_per_point == 5
    assert merged.server.max_model_len == spec.server.max_model_len  # untouched fields survive


def test_bad_pipeline_params_are_spec_errors():
    with pytest.raises(SpecError, match="sweep.batch_sizes"):
        spec_from_params({"batch_sizes": [0]})


def test_run_id_is_derived_once():
    spec = BenchmarkSpec(name="my run!").with_run_id()
    assert spec.run_id.startswith("my-run-") and spec.with_run_id().run_id == spec.run_id


def test_adaptive_strategy_needs_an_slo_and_closed_loop_client_concurrency():
    base = {"sweep": {"strategy": "adaptive", "batch_sizes": [1, 64], "requests_per_point": 4}}
    with pytest.raises(SpecError, match="needs at least one SLO limit"):
        parse_spec(base)
    spec = parse_spec({**base, "slo": {"ttft_p99_ms": 500}})
    assert spec.sweep.strategy == "adaptive" and spec.sweep.client_workers == 1
    with pytest.raises(SpecError, match="client_concurrency mode only"):
        parse_spec({"sweep": {**base["sweep"], "modes": ["server_max_seqs"]}, "slo": {"ttft_p99_ms": 500}})


@pytest.mark.parametrize("name", ["../../etc", "._hidden", "-x-", "ü ö", "a" * 200, "!!!"])
def test_a_derived_run_id_follows_the_rule_a_given_one_must(name):
    from servesweep.spec import valid_run_id

    run_id = BenchmarkSpec(name=name).with_run_id().run_id
    assert valid_run_id(run_id) and "/" not in run_id and not run_id.startswith(".")
    assert BenchmarkSpec(run_id=run_id).run_id == run_id  # passes the field's own validation


SPECS = sorted((REPO / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_shipped_spec_validates_without_planner_warnings(path: Path):
    result = CliRunner().invoke(app, ["validate", str(path)], terminal_width=240)
    assert result.exit_code == 0, result.output
    assert "deployment cc" in result.output or "deployment sm-" in result.output
    assert "planner warning" not in result.output  # every shipped spec has GPUs enough for its model


@pytest.mark.parametrize(("name", "preset", "quantization"), [
    ("h200-tp-llama3-70b", "llama3-70b", "none"), ("h200-tp-llama3-70b-fp8", "llama3-70b", "fp8"),
    ("h200-tp-llama3-8b", "llama3-8b", "none"),
])
def test_tensor_parallel_specs_run_dummy_weights_on_two_h200s(name: str, preset: str, quantization: str):
    spec = load_spec(REPO / "specs" / f"{name}.yaml")
    assert (spec.name, spec.model.preset, spec.quantization) == (name, preset, quantization)
    assert spec.model.weights == "dummy"
    assert (spec.accelerator.type, spec.accelerator.count) == ("nvidia-h200-141gb", 2)
    assert spec.server.env == {"VLLM_USE_FLASHINFER_SAMPLER": "0", "NCCL_NVLS_ENABLE": "0"}
    assert [(w.input_tokens, w.output_tokens) for w in spec.workloads] == [(128, 128), (2048, 128)]
    assert spec.sweep.batch_sizes == [1, 2, 4, 8, 16, 32, 64, 128, 256]


def test_the_llama3_70b_preset_is_the_released_architecture():
    from servesweep.planner.models import from_shape, get_model
    from servesweep.spec import MODEL_PRESETS

    shape = MODEL_PRESETS["llama3-70b"]
    assert (shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers, shape.num_attention_heads,
            shape.num_key_value_heads, shape.vocab_size, shape.max_position_embeddings) == (
        8192, 28672, 80, 64, 8, 128256, 8192)
    # Estimated from the shape it is exactly the model catalog's count of the released checkpoint.
    assert from_shape("llama3-70b", shape).parameters == get_model("llama3-70b").parameters == 70_553_706_496
