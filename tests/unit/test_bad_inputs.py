"""Bad input of every kind ends in exit code 2 and one `error:` line naming what is wrong: no traceback,
nothing written. Spec files go through `servesweep run` (the command that would write the most), flags
through their commands, pipeline parameters through the Argo step entry point (`pipelines.argo_steps`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.argo_steps import main as step_main
from servesweep.cli import app
from servesweep.spec import PipelineParams
from servesweep.yamlfile import MAX_BYTES
from tests.support.analysis_lake import fleet_rows, write_points
from tests.support.paths import REPO

ROOT = REPO
OK_SWEEP = "sweep: {batch_sizes: [1], requests_per_point: 2}\n"


def _one_error_line(output: str) -> str:
    """The output is exactly one line, an `error:` line; returns it."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*")}


# --- spec files ------------------------------------------------------------------------------------

SPEC_FILES = [
    pytest.param(b"name: \xff\xfe\n", "not UTF-8", id="non-utf8"),
    pytest.param("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply", id="deeply-nested"),
    pytest.param("name: a\nname: b\n", "duplicate key 'name'", id="duplicate-top-key"),
    pytest.param("sweep:\n  batch_sizes: [1]\n  batch_sizes: [2]\n  requests_per_point: 2\n",
                 "duplicate key 'batch_sizes'", id="duplicate-nested-key"),
    pytest.param("", "is empty", id="empty-file"),
    pytest.param("# only a comment\n\n", "is empty", id="comment-only-file"),
    pytest.param("- 1\n- 2\n", "expected a mapping", id="top-level-list"),
    pytest.param("a: [unclosed\n", "not valid YAML", id="yaml-syntax"),
    pytest.param("name: !!python/object/apply:os.system ['true']\n", "not valid YAML", id="python-tag"),
    pytest.param("#" * (MAX_BYTES + 10) + "\n", "larger than", id="oversized-file"),
    pytest.param("sweep: {batch_sizes: [100000000], requests_per_point: 2}\n", "sweep.batch_sizes", id="batch-1e8"),
    pytest.param("sweep: {batch_sizes: [1], requests_per_point: 10000000000}\n", "sweep.requests_per_point",
                 id="requests-1e10"),
    pytest.param("model: {seed: 1.0e+30}\n", "model.seed", id="seed-1e30"),
    pytest.param("model: {seed: -1}\n", "model.seed", id="seed-negative"),
    pytest.param("model: {seed: abc}\n", "model.seed", id="seed-not-a-number"),
    pytest.param("workloads: [{input_tokens: 0, output_tokens: 8}]\n", "workloads.0.input_tokens", id="input-0"),
    pytest.param("workloads: [{input_tokens: 8, output_tokens: -5}]\n", "workloads.0.output_tokens",
                 id="output-negative"),
    pytest.param("workloads: [{input_tokens: 1000000000, output_tokens: 8}]\n", "workloads.0.input_tokens",
                 id="input-1e9"),
    pytest.param("workloads: [" + ", ".join(f"{{input_tokens: {i}, output_tokens: 1}}" for i in range(2, 102))
                 + "]\n", "workloads", id="workloads-100"),
    pytest.param("server: {max_model_len: 1000000000000}\n", "server.max_model_len", id="max-model-len-1e12"),
    pytest.param("server: {startup_timeout_s: .inf}\n", "server.startup_timeout_s", id="timeout-inf"),
    pytest.param("server: {startup_timeout_s: .nan}\n", "server.startup_timeout_s", id="timeout-nan"),
    pytest.param("server: {gpu_memory_utilization: 2}\n", "server.gpu_memory_utilization", id="gpu-util-2"),
    pytest.param("server: {cpu_kv_cache_gib: 1000000}\n", "server.cpu_kv_cache_gib", id="kv-cache-1e6"),
    pytest.param("server: {extra_args: --foo}\n", "server.extra_args", id="extra-args-not-a-list"),
    pytest.param("server: {env: {BAD-NAME: x}}\n", "server.env", id="env-bad-name"),
    pytest.param("server: {env: {TOKEN: 12345678}}\n", "server.env.TOKEN", id="env-value-not-a-string"),
    pytest.param("server: {secret_env: {HF_TOKEN: {secret: hf-token, key: token}}}\n", "server.secret_env",
                 id="secret-env-locally"),
    pytest.param("server: {secret_env: {T: {secret: Not_A_Name, key: token}}}\n", "server.secret_env.T.secret",
                 id="secret-name-invalid"),
    pytest.param("server:\n  env: {T: abcdefgh}\n  secret_env: {T: {secret: s, key: k}}\n", "env and secret_env",
                 id="env-and-secret-env"),
    pytest.param("sweep: {batch_sizes: [1], request_timeout_s: 1.0e+9, requests_per_point: 2}\n",
                 "sweep.request_timeout_s", id="request-timeout-1e9"),
    pytest.param("sweep: {batch_sizes: [1], duration_s: -1}\n", "sweep.duration_s", id="duration-negative"),
    pytest.param("sweep: {batch_sizes: [1], scrape_interval_s: 0, requests_per_point: 2}\n",
                 "sweep.scrape_interval_s", id="scrape-interval-0"),
    pytest.param("sweep: {batch_sizes: [1], warmup_requests: 1000000000, requests_per_point: 2}\n",
                 "sweep.warmup_requests", id="warmup-1e9"),
    pytest.param("sweep: {batch_sizes: [1], rounds_per_point: 1000000000}\n", "sweep.rounds_per_point",
                 id="rounds-1e9"),
    pytest.param("sweep: {batch_sizes: [1], client_workers: 1000, requests_per_point: 2}\n", "sweep.client_workers",
                 id="workers-1000"),
    pytest.param("sweep: {batch_sizes: [1], modes: [server_max_seqs, server_max_seqs], requests_per_point: 2}\n",
                 "sweep.modes", id="modes-repeated"),
    pytest.param("sweep: {batch_sizes: [], requests_per_point: 2}\n", "sweep.batch_sizes", id="batch-sizes-empty"),
    pytest.param("sweep: {batch_sizes: [1], load: open, request_rates: [.nan], requests_per_point: 2}\n",
                 "sweep.request_rates.0", id="request-rate-nan"),
    pytest.param("accelerator: {count: 0}\n", "accelerator.count", id="accelerator-count-0"),
    pytest.param("accelerator: {type: tpu-v9}\n", "accelerator.type", id="accelerator-unknown"),
    pytest.param("slo: {ttft_p99_ms: .inf}\n", "slo.ttft_p99_ms", id="slo-inf"),
    pytest.param("slo: {tpot_p99_ms: -1}\n", "slo.tpot_p99_ms", id="slo-negative"),
    pytest.param("run_id: ../../x\n", "run_id", id="run-id-traversal"),
    pytest.param("run_id: \"a'b\"\n", "run_id", id="run-id-quote"),
    pytest.param(f"run_id: {'r' * 81}\n", "run_id", id="run-id-81-chars"),
    pytest.param("lake_uri: s3://bucket/lake\n", "lake_uri", id="lake-s3"),
    pytest.param("lake_uri: gs://\n", "lake_uri", id="lake-gs-no-bucket"),
    pytest.param("quantisation: fp8\n", "quantisation", id="unknown-field"),
    pytest.param("variants: [none, w4a16, none]\n" + OK_SWEEP, "variants repeat", id="variants-repeated"),
    pytest.param("variants: [none, w3]\n" + OK_SWEEP, "variants.1", id="variants-unknown-method"),
    pytest.param("quantization: fp8\nvariants: [none, w4a16]\n" + OK_SWEEP, "either `quantization`",
                 id="variants-and-quantization"),
    pytest.param(f"run_id: {'r' * 75}\nvariants: [none, w8a8-int8]\n" + OK_SWEEP, "too long for variants",
                 id="variants-run-id-too-long"),
    pytest.param("name: ''\n", "name", id="name-empty"),
    pytest.param(f"name: {'n' * 500}\n", "name", id="name-500-chars"),
    pytest.param("model: {shape: {hidden_size: 1000000000}}\n", "model.shape.hidden_size", id="hidden-size-1e9"),
    pytest.param((ROOT / "specs" / "gke.yaml").read_text(), "gke", id="gke-spec-run-locally"),
    pytest.param("server: {kind: external}\n" + OK_SWEEP, "server.external", id="external-without-section"),
    pytest.param("server: {kind: external, external: {base_url: 'ftp://x', served_model_name: m}}\n" + OK_SWEEP,
                 "server.external.base_url", id="external-not-http"),
    pytest.param("server: {kind: external, external: {base_url: 'http://x:8000', served_model_name: m, "
                 "auth_env: 'bad name'}}\n" + OK_SWEEP, "server.external.auth_env", id="external-auth-env-name"),
    pytest.param("workloads: [{input_tokens: 8, output_tokens: 8, api: grpc}]\n" + OK_SWEEP, "workloads.0.api",
                 id="api-unknown"),
    pytest.param("workloads: [{input_tokens: 8, output_tokens: 8, dataset: {format: csv, path: x}}]\n" + OK_SWEEP,
                 "workloads.0.dataset.format", id="dataset-format-unknown"),
    pytest.param("workloads: [{input_tokens: 8, output_tokens: 8, input_distribution: {kind: uniform}}]\n"
                 + OK_SWEEP, "uniform distribution needs min and max", id="uniform-without-bounds"),
    pytest.param("workloads: [{input_tokens: 8, output_tokens: 8}, {input_tokens: 8, output_tokens: 8, "
                 "dataset: {format: jsonl, path: p}}]\n" + OK_SWEEP, "give each a `name`", id="workloads-same-key"),
    pytest.param("workloads: [{input_tokens: 64, output_tokens: 8, shared_prefix: {num_prefixes: 2, "
                 "prefix_tokens: 64}}]\n" + OK_SWEEP, "shared_prefix.prefix_tokens 64 must be below input_tokens",
                 id="prefix-too-long"),
    pytest.param("workloads: [{input_tokens: 64, output_tokens: 8, conversation: {turns: 1}}]\n" + OK_SWEEP,
                 "workloads.0.conversation.turns", id="conversation-one-turn"),
    pytest.param("sweep: {stages: [{duration_s: 5, rate: 1, concurrency: 2}]}\n", "sweep.stages.0",
                 id="stage-rate-and-concurrency"),
    pytest.param("sweep: {stages: [{duration_s: 5, concurrency: 2, ramp_to_rate: 3}]}\n", "ramp_to_rate",
                 id="stage-ramp-closed"),
    pytest.param("sweep: {batch_sizes: [1], requests_per_point: 2, burstiness: 0}\n", "sweep.burstiness",
                 id="burstiness-0"),
    pytest.param("sweep: {batch_sizes: [1], requests_per_point: 2, arrival: weibull}\n", "sweep.arrival",
                 id="arrival-unknown"),
    pytest.param("sweep: {trace: {path: t.csv, time_scale: -1}}\n", "sweep.trace.time_scale", id="trace-scale"),
    pytest.param("sweep: {batch_sizes: [1], requests_per_point: 2, stop: {min_throughput_gain: -1}}\n",
                 "sweep.stop.min_throughput_gain", id="stop-gain-negative"),
    pytest.param("sweep: {batch_sizes: [1], requests_per_point: 2, stop: {slo_margin: 1.5}}\n",
                 "sweep.stop.slo_margin needs an SLO limit", id="stop-slo-without-slo"),
    pytest.param((ROOT / "specs" / "gke.yaml").read_text() + "  object_store_secret: Minio_Creds\n",
                 "gke.object_store_secret", id="gke-object-store-secret-bad-name"),
]


@pytest.mark.parametrize(("content", "names"), SPEC_FILES)
def test_a_bad_spec_file_is_one_line_and_writes_nothing(tmp_path, monkeypatch, content, names):
    monkeypatch.chdir(tmp_path)  # `run` would write local_outputs/ and ./lake here
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 2, result.output
    assert names in _one_error_line(result.output)
    assert _files(tmp_path) == {spec}


@pytest.mark.parametrize(("make", "names"), [
    pytest.param(lambda tmp: tmp / "missing.yaml", "cannot read spec", id="missing-file"),
    pytest.param(lambda tmp: (tmp / "folder").mkdir() or tmp / "folder", "cannot read spec", id="a-directory"),
])
def test_an_unreadable_spec_path_is_one_line(tmp_path, monkeypatch, make, names):
    monkeypatch.chdir(tmp_path)
    path = make(tmp_path)
    before = _files(tmp_path)
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and names in _one_error_line(result.output)
    assert _files(tmp_path) == before


# --- command-line flags ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corrupt_lake(tmp_path_factory) -> tuple[str, Path]:
    """A lake with one Parquet file overwritten by garbage."""
    lake = tmp_path_factory.mktemp("corrupt") / "lake"
    write_points(str(lake), fleet_rows())
    broken = sorted((lake / "points").rglob("*.parquet"))[0]
    broken.write_text("not parquet")
    return str(lake), broken


FLAGS = [
    pytest.param(["run", "{spec}", "--run-id", "../../x"], "run_id", id="run-id-traversal"),
    pytest.param(["run", "{spec}", "--run-id", "a b"], "run_id", id="run-id-space"),
    pytest.param(["run", "{spec}", "--run-id", "-x"], "run_id", id="run-id-leading-dash"),
    pytest.param(["run", "{spec}", "--lake", "s3://bucket/lake"], "lake_uri", id="run-lake-s3"),
    pytest.param(["plan", "tiny", "--input-tokens", "0"], "--input-tokens", id="plan-input-0"),
    pytest.param(["plan", "tiny", "--output-tokens", "-5"], "--output-tokens", id="plan-output-negative"),
    pytest.param(["plan", "tiny", "--input-tokens", "abc"], "--input-tokens", id="plan-input-not-a-number"),
    pytest.param(["plan", "tiny", "--output-tokens", "10000000000"], "--output-tokens", id="plan-output-1e10"),
    pytest.param(["plan", "tiny", "--context", "0"], "--context", id="plan-context-0"),
    pytest.param(["plan", "tiny", "--slo-ttft-ms", "-1"], "--slo-ttft-ms", id="plan-slo-negative"),
    pytest.param(["plan", "tiny", "--slo-tpot-ms", "nan"], "--slo-tpot-ms", id="plan-slo-nan"),
    pytest.param(["plan"], "model", id="plan-no-model"),
    pytest.param(["report", "../x"], "run id", id="report-run-id-traversal"),
    pytest.param(["report", "a", "--out", "{file}"], "--out", id="report-out-is-a-file"),
    pytest.param(["report", "a", "--slo-e2e-ms", "0"], "--slo-e2e-ms", id="report-slo-0"),
    pytest.param(["report", "a", "--pricing", "reserved"], "--pricing", id="report-pricing-unknown"),
    pytest.param(["query", "select count(*) from points", "--lake", "{lake}"], "{broken}", id="query-corrupt-parquet"),
    pytest.param(["schema", "bogus"], "unknown table", id="schema-unknown-table"),
    pytest.param(["views", "bogus"], "unknown view", id="views-unknown-view"),
    pytest.param(["submit"], "--kfp", id="submit-no-host"),
    pytest.param(["compile", "--gke-spec", "{spec}", "--out", "{tmp}/out"], "gke", id="compile-local-spec"),
    pytest.param(["validate"], "spec_path", id="validate-no-spec"),
    pytest.param(["no-such-command"], "no-such-command", id="unknown-command"),
    pytest.param(["--bogus"], "--bogus", id="unknown-option"),
]


@pytest.mark.parametrize(("args", "names"), FLAGS)
def test_a_bad_flag_is_one_line_and_writes_nothing(tmp_path, monkeypatch, corrupt_lake, args, names):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(OK_SWEEP)
    (tmp_path / "a-file").write_text("")
    lake, broken = corrupt_lake
    values = {"spec": "spec.yaml", "file": "a-file", "lake": lake, "broken": str(broken), "tmp": str(tmp_path)}
    before = _files(tmp_path)
    result = CliRunner().invoke(app, [arg.format(**values) for arg in args])
    assert result.exit_code == 2, result.output
    assert names.format(**values) in _one_error_line(result.output)
    assert _files(tmp_path) == before


def test_report_over_a_corrupt_parquet_file_is_one_line(tmp_path, corrupt_lake):
    lake, broken = corrupt_lake
    result = CliRunner().invoke(app, ["report", "l4", "--lake", lake, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and str(broken) in _one_error_line(result.output)


# --- pipeline parameters ---------------------------------------------------------------------------

def _params(**overrides: str) -> list[str]:
    """resolve-spec's command line as the Argo template passes it: every parameter a string, lists as JSON."""
    values = {name: json.dumps(value) if isinstance(value, list) else str(value)
              for name, value in PipelineParams().model_dump().items()} | overrides
    return [arg for name, value in values.items() for arg in (f"--{name}", value)]


PARAMS = [
    pytest.param({"run_id": "../x"}, "run_id", id="run-id-traversal"),
    pytest.param({"run_id": "x;rm"}, "run_id", id="run-id-semicolon"),
    pytest.param({"batch_sizes": "[1,"}, "batch_sizes", id="batch-sizes-bad-json"),
    pytest.param({"batch_sizes": "[0]"}, "sweep.batch_sizes", id="batch-size-0"),
    pytest.param({"batch_sizes": "[100000000]"}, "sweep.batch_sizes", id="batch-size-1e8"),
    pytest.param({"input_tokens": "abc"}, "input_tokens", id="input-not-a-number"),
    pytest.param({"input_tokens": "0"}, "workloads.0.input_tokens", id="input-0"),
    pytest.param({"requests_per_point": "10000000000"}, "sweep.requests_per_point", id="requests-1e10"),
    pytest.param({"accelerator_count": "0"}, "accelerator.count", id="accelerator-count-0"),
    pytest.param({"lake_uri": "s3://bucket/lake"}, "lake_uri", id="lake-s3"),
    pytest.param({"slo_ttft_p99_ms": "nan"}, "slo_ttft_p99_ms", id="slo-nan"),
    pytest.param({"sweep_modes": '["client_concurrency", "client_concurrency"]'}, "sweep.modes", id="modes-repeated"),
    pytest.param({"spec_yaml": "name: a\nname: b\n"}, "duplicate key 'name'", id="spec-yaml-duplicate-key"),
    pytest.param({"spec_yaml": "a: [\n"}, "spec_yaml", id="spec-yaml-syntax"),
    pytest.param({"spec_yaml": "a: " + "[" * 5000 + "]" * 5000}, "nested too deeply", id="spec-yaml-deep"),
    pytest.param({"spec_yaml": "model: {seed: 1.0e+30}\n"}, "model.seed", id="spec-yaml-seed-1e30"),
    pytest.param({"bogus": "1"}, "bogus", id="unknown-parameter"),
]


@pytest.mark.parametrize(("overrides", "names"), PARAMS)
def test_bad_pipeline_parameters_stop_resolve_spec_with_exit_code_2(tmp_path, capsys, overrides, names):
    out = tmp_path / "spec_json"
    code = step_main(["resolve-spec", *_params(**overrides), "--out_spec_json", str(out)])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.out == "" and names in _one_error_line(captured.err)
    assert not out.exists()


def test_the_real_entry_points_exit_2_without_a_traceback(tmp_path):
    """As a shell or an Argo pod runs them: separate processes, their own exit codes."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("run_id: ../../x\n")
    cli = subprocess.run([sys.executable, "-m", "servesweep.cli", "run", str(spec)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "run_id" in _one_error_line(cli.stdout + cli.stderr)
    step = subprocess.run([sys.executable, "-m", "pipelines.argo_steps", "resolve-spec", *_params(run_id="../x"),
                           "--out_spec_json", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert step.returncode == 2 and "run_id" in _one_error_line(step.stdout + step.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
