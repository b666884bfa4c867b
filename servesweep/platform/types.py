"""What the platforms and the steps hand each other: capacity, checkpoints, servers.

Plain data only (every platform imports this module, and none of it may need a platform's extra), carried
between steps as JSON.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from servesweep.k8s.capacity import Capacity as GKECapacity
from servesweep.spec import ModelShape, SweepMode

PlatformName = Literal["local", "gke", "external"]


class EndpointAuthError(RuntimeError):
    """An endpoint's token variable is named but not set where the step runs."""


class ProvisionError(RuntimeError):
    """The platform cannot give the spec's servers what they need (no such GPUs here, too little memory)."""


class Capacity(BaseModel):
    """What the provision step found or made; the deploy steps place their servers with it."""

    platform: PlatformName = "local"
    cpus: int = 0
    memory_gib: float = 0.0
    gpus: list[str] = []
    created: bool = False  # whether this run created capacity it must release
    gke: GKECapacity | None = None  # what GKE provisioning did; its node selector places the servers

    @property
    def node_selector(self) -> dict[str, str]:
        return dict(self.gke.node_selector) if self.gke else {}


class ModelInfo(BaseModel):
    """What the load-model step produced; recorded in every `points` row of the run."""

    path: str
    served_name: str
    parameters: int
    dtype: str
    bytes_on_disk: int
    seconds: float
    vocab_size: int
    tokenizer_vocab_size: int
    shape: ModelShape


@dataclass(frozen=True)
class ServerRequest:
    """One server a deploy step asks its platform for."""

    model_path: str  # the load-model step's output directory (locally: the checkpoint itself)
    deployment_id: str
    max_num_seqs: int
    owner: str  # the pipeline job: everything it starts is found again by this id
    sweep_mode: SweepMode = "client_concurrency"
    node_selector: dict[str, str] = field(default_factory=dict)  # from the provision step's Capacity
    log_dir: str | None = None  # where the server's log goes, on platforms that write one


class Endpoint(BaseModel):
    """A deployed server, or why it could not be deployed (`error`)."""

    deployment_id: str
    max_num_seqs: int
    base_url: str = ""
    metrics_url: str = ""
    served_name: str = ""
    start_seconds: float | None = None
    pid: int | None = None
    log_path: str = ""
    error: str | None = None
    metric_prefix: str = "vllm:"  # the server's Prometheus metric names start with it
    api: str = "openai"  # the request protocol the server speaks (servesweep.k8s.servers.ApiKind)
    namespace: str = ""  # set when the server runs on GKE ...
    label_selector: str = ""  # ... and its Kubernetes objects are the ones these labels select
    platform: PlatformName = "local"  # the platform that deployed it, and so the one that stops it
    gke_facts: dict[str, str | None] = {}  # GKE: image, digest, node type of the server (servesweep.k8s.facts)
    auth_env: str | None = None  # external: the variable holding the token (its value never travels)
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"

    def request_headers(self) -> dict[str, str]:
        """Headers every request to this server carries: the auth header of an external endpoint whose token
        is in `auth_env` (read here, where the step runs); EndpointAuthError when that variable is unset."""
        if not self.auth_env:
            return {}
        token = os.environ.get(self.auth_env)
        if not token:
            raise EndpointAuthError(f"server.external: the token variable {self.auth_env} is not set where this "
                                    "step runs")
        return {self.auth_header: f"{self.auth_scheme} {token}" if self.auth_scheme else token}
