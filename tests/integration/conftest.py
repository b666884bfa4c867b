"""One real vLLM CPU server for every integration test, benchmarked as `server.kind: external`.

The server is started here, not by servesweep: the tests point a spec's `server.external` at it, so every
integration test exercises the external endpoint path as well as its own feature. It requires an API key
(vLLM --api-key), so the auth header is exercised too; chat requests use the bundled chat template (the
generated model has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from servesweep.platform.local import free_port, vllm_command
from servesweep.spec import BenchmarkSpec
from tests.support.vllm_server import running_vllm

TOKEN_ENV = "SERVESWEEP_TEST_ENDPOINT_TOKEN"
TOKEN = "integration-key-7c1d"
CHAT_TEMPLATE = Path(__file__).resolve().parents[2] / "servesweep" / "data" / "chat_template.jinja"
MAX_NUM_SEQS = 8
MAX_MODEL_LEN = 1024


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    metrics_url: str
    served_name: str
    tokenizer_dir: str
    log: Path

    def external(self, **fields: object) -> dict:
        """The spec's `server` section that benchmarks this server as an external endpoint."""
        return {"kind": "external", "max_model_len": MAX_MODEL_LEN, "external": {
            "base_url": self.base_url, "served_model_name": self.served_name, "metrics_url": self.metrics_url,
            "auth_env": TOKEN_ENV, "tokenizer_dir": self.tokenizer_dir, **fields}}


@pytest.fixture(scope="session")
def vllm_server(tiny_model, tmp_path_factory):
    spec = BenchmarkSpec(server={"max_model_len": MAX_MODEL_LEN})
    port = free_port()
    command = vllm_command(spec, tiny_model.path, port, MAX_NUM_SEQS) + [
        "--api-key", TOKEN, "--chat-template", str(CHAT_TEMPLATE)]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with running_vllm(command, spec, log, spec.model.name, token=TOKEN) as base_url:
        yield RunningServer(base_url, base_url + "/metrics", spec.model.name, tiny_model.path, log)


@pytest.fixture
def endpoint_token(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return TOKEN


def run_steps(spec: BenchmarkSpec, out: Path) -> str:
    """The pipeline's steps in this process (no KFP): load-model, plan-sweep, deploy, sweep, collect, write;
    returns the lake URI."""
    from components.collect_metrics import collect_metrics
    from components.deploy_server import deploy_server, teardown_server
    from components.load_model import prepare_model
    from components.sweep import run_sweep
    from components.write_lake import write_lake
    from servesweep.sweep_plan import plan_deployments

    model = prepare_model(spec, out / "model")
    raws = []
    for deployment in plan_deployments(spec):
        endpoint = deploy_server(spec, model.path, deployment.deployment_id, deployment.max_num_seqs, "test")
        assert endpoint.error is None, endpoint.error
        raw = out / "raw" / deployment.deployment_id
        run_sweep(spec, deployment, endpoint, model.path, raw)
        teardown_server(endpoint, "test")
        raws.append(str(raw))
    write_lake(spec.lake_uri, spec.run_id, collect_metrics(spec, model, raws))
    return spec.lake_uri
