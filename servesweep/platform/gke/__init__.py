"""The GKE platform: capacity by node pool, auto-provisioning or ComputeClass, servers as Deployments on the
spec's cluster, checkpoints in GCS or on the hub (the [gke] extra).

cluster.py does capacity, servers and teardown through servesweep.k8s; checkpoints.py the model source.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from servesweep.gke_spec import GKESpec
from servesweep.k8s.deploy import KubeApis
from servesweep.k8s.provision import GKEProvisioner
from servesweep.platform.gke.checkpoints import fetch_checkpoint
from servesweep.platform.gke.cluster import deploy_gke, provision_gke, teardown_endpoint, teardown_job
from servesweep.platform.types import Capacity, Endpoint, ModelInfo, PlatformName, ServerRequest
from servesweep.spec import BenchmarkSpec


class GKEPlatform:
    """Servers on the GKE cluster of `gke` (the spec's section), through the pod's in-cluster credentials.

    `apis` and `provisioner` replace the real API clients (tests pass recording fakes). Stopping one server
    needs only its endpoint, so `gke` may be None for that.
    """

    name: ClassVar[PlatformName] = "gke"

    def __init__(self, gke: GKESpec | None = None, apis: KubeApis | None = None,
                 provisioner: GKEProvisioner | None = None) -> None:
        self.gke = gke
        self.apis = apis
        self.provisioner = provisioner

    def provision(self, spec: BenchmarkSpec, owner: str) -> Capacity:
        capacity = provision_gke(spec, owner, self.apis, self.provisioner)
        return Capacity(platform="gke", created=capacity.created or capacity.resized, gke=capacity)

    def fetch_checkpoint(self, spec: BenchmarkSpec, out_dir: Path) -> ModelInfo:
        return fetch_checkpoint(spec, out_dir)

    def deploy_server(self, spec: BenchmarkSpec, request: ServerRequest) -> Endpoint:
        return deploy_gke(spec, request.deployment_id, request.max_num_seqs, request.sweep_mode, request.owner,
                          request.node_selector, apis=self.apis)

    def teardown_server(self, endpoint: Endpoint, owner: str) -> None:
        teardown_endpoint(endpoint, self.apis)

    def teardown_job(self, owner: str) -> list[str]:
        if self.gke is None:
            raise ValueError("tearing down a GKE job needs the spec's gke section")
        return teardown_job(self.gke, owner, self.apis, self.provisioner)

    def log_dir(self, owner: str) -> None:
        return None  # the pods' logs: kubectl logs, or Cloud Logging after the pods are gone
