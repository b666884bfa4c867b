"""server.kind external without a server: the spec's rules, the platform chosen, headers, compiled secrets."""

from __future__ import annotations

import pytest

from servesweep.platform import platform_for, platform_of
from servesweep.platform.external import ExternalPlatform, check_endpoint
from servesweep.platform.types import Endpoint, EndpointAuthError
from servesweep.spec import SpecError, parse_spec

EXTERNAL = {"kind": "external", "external": {"base_url": "http://vllm.serving.svc.cluster.local:8000",
                                              "served_model_name": "llama"}}


def _spec(**server) -> dict:
    return {"server": {**EXTERNAL, **server}, "sweep": {"requests_per_point": 1}}


def test_an_external_spec_chooses_the_external_platform_even_with_a_gke_section():
    spec = parse_spec(_spec())
    assert isinstance(platform_for(spec), ExternalPlatform)
    assert isinstance(platform_of(Endpoint(deployment_id="cc", max_num_seqs=1, platform="external")),
                      ExternalPlatform)
    assert ExternalPlatform().teardown_job("owner") == [] and ExternalPlatform().log_dir("owner") is None


def test_kind_and_section_go_together():
    with pytest.raises(SpecError, match="server: Value error, server.external is given exactly when|server.external "
                                        "is given exactly when server.kind is 'external'"):
        parse_spec({"server": {"kind": "external"}, "sweep": {"requests_per_point": 1}})
    with pytest.raises(SpecError, match="server.external is given exactly when"):
        parse_spec({"server": {"external": EXTERNAL["external"]}, "sweep": {"requests_per_point": 1}})


def test_a_base_url_must_be_http():
    with pytest.raises(SpecError, match="server.external.base_url"):
        parse_spec(_spec(external={"base_url": "ftp://x", "served_model_name": "m"}))


def test_the_token_becomes_the_auth_header(monkeypatch):
    endpoint = Endpoint(deployment_id="cc", max_num_seqs=1, auth_env="MY_TOKEN")
    monkeypatch.setenv("MY_TOKEN", "abc")
    assert endpoint.request_headers() == {"Authorization": "Bearer abc"}
    raw = endpoint.model_copy(update={"auth_header": "X-Api-Key", "auth_scheme": ""})
    assert raw.request_headers() == {"X-Api-Key": "abc"}
    assert "abc" not in endpoint.model_dump_json()  # the value never travels between steps
    monkeypatch.delenv("MY_TOKEN")
    with pytest.raises(EndpointAuthError, match="MY_TOKEN is not set"):
        endpoint.request_headers()


def test_a_secret_fills_the_default_token_variable():
    spec = parse_spec(_spec(external={**EXTERNAL["external"], "auth_secret": {"secret": "tok", "key": "k"}}))
    assert spec.server.external is not None and spec.server.external.token_env == "SERVESWEEP_ENDPOINT_TOKEN"


def test_an_endpoint_that_does_not_answer_is_an_endpoint_error():
    from servesweep.platform.local import free_port

    endpoint = Endpoint(deployment_id="cc", max_num_seqs=1, base_url=f"http://127.0.0.1:{free_port()}")
    error = check_endpoint(endpoint, timeout_s=2)
    assert error is not None and error.startswith(f"external endpoint {endpoint.base_url} does not answer")


def test_cluster_pipelines_give_the_endpoint_steps_the_secret():
    from pipelines.argo_workflow import build_workflow
    from pipelines.kfp_platform import ENDPOINT_EXECUTORS, endpoint_secret, executor_config

    data = _spec(external={**EXTERNAL["external"], "auth_secret": {"secret": "tok", "key": "k"}})
    spec = parse_spec(data)
    token = endpoint_secret(spec.server.external)
    assert token is not None and token[0] == "SERVESWEEP_ENDPOINT_TOKEN"
    from servesweep.spec import load_spec

    gke = load_spec("specs/gke.yaml").gke
    assert gke is not None
    config = executor_config(gke, endpoint_token=token)
    assert [(s.secret_name, s.key_to_env[0].env_var) for s in config.secret_as_env] == [
        ("tok", "SERVESWEEP_ENDPOINT_TOKEN")]
    assert ENDPOINT_EXECUTORS == ("exec-deploy-server", "exec-sweep", "exec-accuracy")
    templates = {t.name: t for t in build_workflow(spec).templates if hasattr(t, "env")}
    for name in ("deploy-server", "sweep"):
        [env] = templates[name].env
        assert (env.name, env.secret_name, env.secret_key) == ("SERVESWEEP_ENDPOINT_TOKEN", "tok", "k")
    assert not templates["collect-metrics"].env
