"""server.kind external against a real vLLM server this test started: the CLI and the local runner benchmark
it, with its API key read from the environment, deploying and stopping nothing."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from servesweep.cli import app
from servesweep.lake.query import query
from tests.integration.conftest import TOKEN

pytestmark = pytest.mark.server


def test_the_cli_benchmarks_a_running_endpoint(vllm_server, endpoint_token, tmp_path):
    spec = tmp_path / "external.yaml"
    lake = tmp_path / "lake"
    spec.write_text(yaml.safe_dump({
        "name": "external", "run_id": "external-run", "lake_uri": str(lake), "server": vllm_server.external(),
        "workloads": [{"input_tokens": 32, "output_tokens": 8}],
        "sweep": {"batch_sizes": [1, 2], "requests_per_point": 4, "warmup_requests": 1, "scrape_interval_s": 0.2},
    }))
    result = CliRunner().invoke(app, ["run", str(spec), "--pipeline-root", str(tmp_path / "kfp")])
    assert result.exit_code == 0, result.output
    points = query(str(lake), "select point_id, status, server_kind, server_start_s, running_requests_max, "
                              "num_requests from points where source = 'measured' order by point_id").to_pylist()
    assert [p["point_id"] for p in points] == ["cc-b1-i32-o8", "cc-b2-i32-o8"]
    for point in points:
        assert point["status"] == "ok" and point["server_kind"] == "external" and point["num_requests"] == 4
        assert point["server_start_s"] is None  # nothing was started
        assert point["running_requests_max"] is not None  # its metrics_url was scraped
    [run] = query(str(lake), "select server_version, server_version_source, notes from runs").to_pylist()
    assert run["server_version"] and run["server_version_source"] == "GET /version"
    assert "an external endpoint" in run["notes"]
    tokens = query(str(lake), "select sum(input_tokens) as i, sum(output_tokens) as o from requests "
                              "where not warmup").to_pylist()
    assert tokens == [{"i": 8 * 32, "o": 8 * 8}]  # its own tokenizer: exact prompt lengths
    assert TOKEN not in (tmp_path / "kfp" / "external-run.log").read_text()
    assert "server logs:" not in result.output  # no server of this run: no logs to keep


def test_without_the_token_every_point_fails_saying_why(vllm_server, tmp_path, monkeypatch):
    from components.deploy_server import deploy_server
    from servesweep.spec import parse_spec

    monkeypatch.delenv("SERVESWEEP_TEST_ENDPOINT_TOKEN", raising=False)
    spec = parse_spec({"run_id": "x", "server": vllm_server.external(), "sweep": {"requests_per_point": 1}})
    endpoint = deploy_server(spec, "", "cc", 4, "owner")
    assert endpoint.error == ("server.external: the token variable SERVESWEEP_TEST_ENDPOINT_TOKEN is not set "
                              "where this step runs")


def test_a_wrong_token_is_refused_by_the_endpoint(vllm_server, tmp_path, monkeypatch):
    from components.deploy_server import deploy_server
    from servesweep.spec import parse_spec

    monkeypatch.setenv("SERVESWEEP_TEST_ENDPOINT_TOKEN", "wrong")
    spec = parse_spec({"run_id": "x", "server": vllm_server.external(), "sweep": {"requests_per_point": 1}})
    endpoint = deploy_server(spec, "", "cc", 4, "owner")
    assert endpoint.error == f"external endpoint {vllm_server.base_url}: GET /v1/models answered HTTP 401"
