"""server.env values reach the server process and nothing else: not pipeline parameters, compiled YAML,
KFP's run folder or log, the lake, or a message. Real runs below grep every file they wrote."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from components.collect_metrics import collect_metrics
from components.deploy_server import deploy_server, teardown_server
from components.sweep import run_sweep
from servesweep.cli import app
from servesweep.lake.query import query
from servesweep.lake.store import to_table
from servesweep.platform.gke.cluster import deploy_gke, server_bundle
from servesweep.platform.local import _log_tail
from servesweep.platform.types import Endpoint, ModelInfo
from servesweep.secrets import MASK, SERVER_ENV_VAR, WITHHELD, SecretMissing, hand_over, mask, resolve_env
from servesweep.spec import ModelShape, parse_spec, spec_from_params, spec_to_params
from servesweep.sweep_plan import plan_deployments
from tests.support.paths import REPO

TOKEN = "hf_" + "F4k3T0k3n" * 4  # shaped like a hub token
CANARY = "canary-9f8e7d6c5b4a3210"  # shaped like nothing: only value masking can hide it
SECRETS = (TOKEN, CANARY)


def _leaks(root: Path) -> list[str]:
    """Every file under root whose bytes, or whose Parquet cells, hold a secret."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        text = str(pq.read_table(path).to_pylist()) if data[:4] == b"PAR1" else ""  # KFP artifacts lack suffixes
        found += [f"{path}: {secret[:8]}..." for secret in SECRETS if secret.encode() in data or secret in text]
    return found


def _gke_data(**server) -> dict:
    data = yaml.safe_load((REPO / "specs" / "gke.yaml").read_text())
    data["server"].update(server)
    return data


# --- the helpers -------------------------------------------------------------------------------------

def test_mask_hides_known_values_and_hub_tokens_but_not_short_settings():
    text = f"bad value {CANARY!r} and {TOKEN}; exit code 0, max_model_len 4096"
    assert mask(text, [CANARY, "0", "4096"]) == f"bad value '{MASK}' and {MASK}; exit code 0, max_model_len 4096"
    assert mask(f"x{CANARY}x", [CANARY[:10], CANARY]) == f"x{MASK}x"  # the longer value first, whole


def test_withheld_values_resolve_only_while_handed_over(monkeypatch):
    monkeypatch.delenv(SERVER_ENV_VAR, raising=False)
    with hand_over({"A": CANARY}):
        assert resolve_env({"A": WITHHELD, "B": "1"}) == {"A": CANARY, "B": "1"}
    with pytest.raises(SecretMissing, match="server.env A: the value was withheld"):
        resolve_env({"A": WITHHELD})
    assert SERVER_ENV_VAR not in os.environ


def test_pipeline_parameters_carry_env_names_not_values():
    spec = parse_spec({"server": {"env": {"HF_TOKEN": TOKEN}}})
    params = spec_to_params(spec).model_dump()
    assert TOKEN not in json.dumps(params) and WITHHELD in params["spec_yaml"]
    assert spec_from_params(params).server.env == {"HF_TOKEN": WITHHELD}
    # A GKE submission's own arguments are how the server there gets a plain env value.
    assert TOKEN in spec_to_params(spec, withhold_env=False).spec_yaml


def test_a_withheld_value_nobody_handed_over_fails_the_deployment_by_name(tmp_path, monkeypatch):
    monkeypatch.delenv(SERVER_ENV_VAR, raising=False)
    spec = parse_spec({"run_id": "r", "server": {"env": {"HF_TOKEN": WITHHELD}}})
    endpoint = deploy_server(spec, str(tmp_path), "cc", 1, "owner", tmp_path / "logs")
    assert endpoint.pid is None and "server.env HF_TOKEN" in endpoint.error
    gke = parse_spec(_gke_data(env={"HF_TOKEN": WITHHELD}) | {"run_id": "r"})
    failed = deploy_gke(gke, "cc", 1, "client_concurrency", "owner", {})  # refused before any API call
    assert "server.env HF_TOKEN" in failed.error


def test_server_log_tail_and_stopped_server_log_are_masked(tmp_path, monkeypatch):
    log = tmp_path / "server.log"
    log.write_text(f"starting\nValueError: invalid literal for int(): {CANARY!r}\nError: token {TOKEN} refused\n")
    tail = _log_tail(log, [CANARY])
    assert "invalid literal" in tail and not any(s in tail for s in SECRETS)
    with hand_over({"VLLM_CPU_KVCACHE_SPACE": CANARY}):
        teardown_server(Endpoint(deployment_id="cc", max_num_seqs=1, log_path=str(log)), "owner")
    assert "invalid literal" in log.read_text() and not any(s in log.read_text() for s in SECRETS)


def test_the_lake_gets_failure_reasons_and_request_errors_masked(tmp_path, monkeypatch):
    spec = parse_spec({"run_id": "r", "server": {"env": {"API_KEY": CANARY}},
                       "sweep": {"batch_sizes": [1], "requests_per_point": 2}})
    deployment = plan_deployments(spec)[0]
    failed = Endpoint(deployment_id="cc", max_num_seqs=1, error=f"server exited: bad key {CANARY}")
    run_sweep(spec, deployment, failed, str(tmp_path), tmp_path / "raw")
    point_id = deployment.points[0].point_id
    rows = [{"run_id": "r", "point_id": point_id, "deployment_id": "cc", "request_index": 0, "warmup": False,
             "ok": False, "error": f"HTTP 401: key {CANARY} / {TOKEN} rejected", "sent_at_s": 0.0,
             "sent_at_unix": 1.0, "requested_input_tokens": 64, "requested_output_tokens": 32}]
    pq.write_table(to_table("requests", rows), tmp_path / "raw" / "requests.parquet")
    model = ModelInfo(path="m", served_name="m", parameters=1, dtype="bfloat16", bytes_on_disk=1, seconds=0.0,
                      vocab_size=2048, tokenizer_vocab_size=2048, shape=ModelShape())
    tables = collect_metrics(spec, model, [str(tmp_path / "raw")])
    [point] = tables["points"].to_pylist()
    assert point["failure_reason"] == f"server start: server exited: bad key {MASK}"
    assert tables["requests"]["error"].to_pylist() == [f"HTTP 401: key {MASK} / {MASK} rejected"]


# --- GKE: Secrets by reference -----------------------------------------------------------------------

def test_secret_env_is_a_secret_key_ref_in_the_deployment():
    spec = parse_spec(_gke_data(env={"HF_HOME": "/cache/hf"}, secret_env={"API_KEY": {"secret": "api", "key": "k"}})
                      | {"run_id": "r"})
    bundle = server_bundle(spec, "cc", 4, "client_concurrency", "owner", {})
    [container] = bundle.manifests()[0]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["API_KEY"] == {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "k"}}}
    assert env["HF_HOME"] == {"name": "HF_HOME", "value": "/cache/hf"}


def test_compiled_definitions_hold_no_env_value(tmp_path):
    spec_file = tmp_path / "gke.yaml"
    spec_file.write_text(yaml.safe_dump(_gke_data(env={"HF_TOKEN": TOKEN, "EXTRA": CANARY},
                                                  secret_env={"API_KEY": {"secret": "api", "key": "k"}})))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compile", "--out", str(out / "pipelines"), "--gke-spec", str(spec_file),
                                      "--deploy-out", str(out / "deploy")])
    assert result.exit_code == 0, result.output
    assert len(list(out.rglob("*.yaml"))) == 5 and _leaks(out) == []
    assert not any(s in result.output for s in SECRETS)
    compiled = (out / "pipelines" / "servesweep_kfp_gke.yaml").read_text()
    assert WITHHELD in compiled and "API_KEY" in compiled  # names stay, values do not


# --- real local runs ---------------------------------------------------------------------------------

def _run(tmp_path: Path, monkeypatch, server: dict) -> tuple[object, Path]:
    """`servesweep run` with every file it writes under tmp_path (servers' state dir included)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "secrets", "run_id": "secrets-run", "lake_uri": str(tmp_path / "lake"),
        "server": {"max_model_len": 256, "startup_timeout_s": 300, **server},
        "workloads": [{"input_tokens": 16, "output_tokens": 8}],
        "sweep": {"batch_sizes": [1], "requests_per_point": 2, "warmup_requests": 0, "scrape_interval_s": 0.2},
    }))
    result = CliRunner().invoke(app, ["run", str(spec), "--pipeline-root", str(tmp_path / "kfp")])
    spec.unlink()  # the one file that holds the values on purpose
    return result, tmp_path / "lake"


@pytest.mark.server
def test_a_real_run_writes_no_env_value_anywhere(tmp_path, monkeypatch):
    result, lake = _run(tmp_path, monkeypatch, {"env": {"HF_TOKEN": TOKEN, "SERVESWEEP_CANARY": CANARY}})
    assert result.exit_code == 0, result.output
    points = query(str(lake), "select status from points where source = 'measured'").to_pylist()
    assert points == [{"status": "ok"}]
    assert list((tmp_path / "kfp").rglob("server-*.log")) and list((tmp_path / "kfp").rglob("*.log"))
    assert _leaks(tmp_path) == [] and not any(s in result.output for s in SECRETS)
    spec_json = next((tmp_path / "kfp").rglob("resolve-spec/executor_output.json")).read_text()
    assert WITHHELD in spec_json  # the spec did travel, names and all


@pytest.mark.server
def test_a_value_the_server_echoes_is_masked_in_the_lake_and_its_log(tmp_path, monkeypatch):
    """vLLM rejects a non-numeric VLLM_CPU_KVCACHE_SPACE quoting it: the value did reach the server process,
    and the failure reason, the task log and the server's own log say *** instead."""
    result, lake = _run(tmp_path, monkeypatch, {"env": {"VLLM_CPU_KVCACHE_SPACE": CANARY}})
    [point] = query(str(lake), "select status, failure_reason from points where source = 'measured'").to_pylist()
    assert point["status"] == "failed" and f"'{MASK}'" in point["failure_reason"], point
    assert _leaks(tmp_path) == [] and not any(s in result.output for s in SECRETS)
    assert any(MASK in log.read_text() for log in (tmp_path / "kfp").rglob("server-*.log"))


def test_leak_finder_sees_a_value_in_a_compressed_parquet_file(tmp_path):
    """The check above is only as good as this: a secret inside a snappy-compressed Parquet cell is found."""
    pq.write_table(pa.table({"error": [CANARY * 3]}), tmp_path / "t.parquet", compression="snappy")
    assert _leaks(tmp_path) == [f"{tmp_path / 't.parquet'}: {CANARY[:8]}..."]
