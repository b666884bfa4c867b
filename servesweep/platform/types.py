"""What the platforms and the steps hand each other: capacity, checkpoints, servers.

Plain data only (every platform imports this module, and none of it may need a platform's extra), carried
between steps as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from servesweep.k8s.capacity import Capacity as GKECapacity
from servesweep.spec import ModelShape, SweepMode

PlatformName = Literal["local", "gke"]


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
