"""One platform, chosen once: the spec (or an endpoint, or the exit handler's spec_yaml) picks it, and the steps
call whichever they are handed without asking which it is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from components.deploy_server import deploy_server, teardown_server
from components.load_model import prepare_model, read_model_info
from components.provision import provision
from components.teardown_all import teardown_all
from servesweep.extras import MissingExtra
from servesweep.platform import platform_for, platform_from_yaml, platform_of
from servesweep.platform.gke import GKEPlatform
from servesweep.platform.local import LocalPlatform, state_root
from servesweep.platform.types import Capacity, Endpoint, ModelInfo, PlatformName, ServerRequest
from servesweep.spec import BenchmarkSpec, ModelShape, parse_spec
from tests.support.paths import REPO

ROOT = REPO
SECRET = "canary-0123456789abcdef"


class RecordingPlatform:
    """A platform that records what the steps ask of it."""

    name: PlatformName = "local"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def provision(self, spec: BenchmarkSpec, owner: str) -> Capacity:
        self.calls.append(("provision", owner))
        return Capacity(cpus=1)

    def fetch_checkpoint(self, spec: BenchmarkSpec, out_dir: Path) -> ModelInfo:
        self.calls.append(("fetch_checkpoint", out_dir))
        return ModelInfo(path="somewhere", served_name=spec.model.name, parameters=1, dtype="bfloat16",
                         bytes_on_disk=1, seconds=0.0, vocab_size=2048, tokenizer_vocab_size=2048, shape=ModelShape())

    def deploy_server(self, spec: BenchmarkSpec, request: ServerRequest) -> Endpoint:
        self.calls.append(("deploy_server", request))
        return Endpoint(deployment_id=request.deployment_id, max_num_seqs=request.max_num_seqs,
                        error=f"server exited: bad key {SECRET}")

    def teardown_server(self, endpoint: Endpoint, owner: str) -> None:
        self.calls.append(("teardown_server", endpoint.deployment_id))

    def teardown_job(self, owner: str) -> list[str]:
        self.calls.append(("teardown_job", owner))
        return ["everything"]

    def log_dir(self, owner: str) -> Path | None:
        return Path("/logs") / owner


def _gke_spec() -> BenchmarkSpec:
    return parse_spec(yaml.safe_load((ROOT / "specs" / "gke.yaml").read_text()))


def test_the_spec_chooses_the_platform():
    assert isinstance(platform_for(BenchmarkSpec()), LocalPlatform)
    spec = _gke_spec()
    chosen = platform_for(spec)
    assert isinstance(chosen, GKEPlatform) and chosen.gke == spec.gke and chosen.name == "gke"


def test_an_endpoint_and_a_spec_yaml_choose_it_too():
    assert isinstance(platform_of(Endpoint(deployment_id="cc", max_num_seqs=1)), LocalPlatform)
    assert isinstance(platform_of(Endpoint(deployment_id="cc", max_num_seqs=1, platform="gke")), GKEPlatform)
    assert isinstance(platform_from_yaml(""), LocalPlatform)
    # The exit handler reads the platform section alone: the rest of this spec is invalid.
    broken = {"sweep": {"batch_sizes": []}, "gke": _gke_spec().model_dump(mode="json")["gke"]}
    handler = platform_from_yaml(yaml.safe_dump(broken))
    assert isinstance(handler, GKEPlatform) and handler.gke is not None and handler.gke.cluster == "my-cluster"


def test_every_step_calls_the_platform_it_is_handed(tmp_path):
    spec = parse_spec({"run_id": "r", "server": {"env": {"API_KEY": SECRET}}})
    fake = RecordingPlatform()
    assert provision(spec, "job", platform=fake).cpus == 1
    info = prepare_model(spec, tmp_path, platform=fake)
    assert read_model_info(tmp_path) == info  # the step, not the platform, writes the info file
    endpoint = deploy_server(spec, "/model", "cc", 4, "job", sweep_mode="server_max_seqs",
                             node_selector={"pool": "a"}, platform=fake)
    teardown_server(endpoint, "job", platform=fake)
    assert teardown_all("job", platform=fake) == ["everything"]
    request = fake.calls[2][1]
    assert request == ServerRequest(model_path="/model", deployment_id="cc", max_num_seqs=4, owner="job",
                                    sweep_mode="server_max_seqs", node_selector={"pool": "a"}, log_dir="/logs/job")
    assert [name for name, _ in fake.calls] == ["provision", "fetch_checkpoint", "deploy_server", "teardown_server",
                                                "teardown_job"]
    assert SECRET not in (endpoint.error or "") and "bad key" in (endpoint.error or "")  # masked by the step


def test_a_given_log_dir_wins_over_the_platforms(tmp_path):
    fake = RecordingPlatform()
    deploy_server(BenchmarkSpec(), "/model", "cc", 1, "job", tmp_path, platform=fake)
    assert fake.calls[0][1].log_dir == str(tmp_path)


def test_the_local_platform_keeps_logs_under_its_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVESWEEP_STATE_DIR", str(tmp_path))
    assert LocalPlatform().log_dir("job") == state_root() / "job" / "logs" == tmp_path / "job" / "logs"
    assert GKEPlatform().log_dir("job") is None  # the pods' logs


def test_a_gke_spec_without_the_gke_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(MissingExtra, match=r"pip install 'servesweep\[gke\]'"):
        platform_for(_gke_spec())
    assert isinstance(platform_for(BenchmarkSpec()), LocalPlatform)  # a local run needs no extra


def test_tearing_down_a_gke_job_needs_its_section():
    with pytest.raises(ValueError, match="needs the spec's gke section"):
        GKEPlatform().teardown_job("job")
