"""GKE-only settings of a benchmark run: cluster, capacity mode, model source, images.

Kept out of spec.py on purpose: a local run never needs them. `BenchmarkSpec.gke` holds a `GKESpec`;
when it is set every step runs its GKE branch.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ProvisioningMode = Literal["node_pool", "autoprovision", "compute_class"]
ReleasePolicy = Literal["delete", "scale_to_zero"]

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_NODE_POOL_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HuggingFaceModel(_Strict):
    """Weights pulled from the Hugging Face hub by the server itself."""

    source: Literal["huggingface"] = "huggingface"
    repo_id: str = Field(..., min_length=1, description="e.g. meta-llama/Llama-3.1-8B-Instruct")
    revision: str | None = Field(None, description="Branch, tag or commit; None: the default branch.")
    token_secret: str | None = Field(
        "hf-token", description="Kubernetes Secret holding the hub token; None for public models."
    )
    token_key: str = Field("token", min_length=1, description="Key of the token inside that Secret.")


class GCSModel(_Strict):
    """Weights in a Cloud Storage bucket, mounted read-only through the GKE gcsfuse CSI driver."""

    source: Literal["gcs"] = "gcs"
    bucket: str
    path: str = Field("", description="Folder inside the bucket that holds config.json and the weights.")
    random_weights: bool = Field(
        True, description="True: load-model writes the spec's random-weight checkpoint to this folder (once per "
                          "model spec); False: the folder already holds a checkpoint, which is only read."
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.match(value):
            raise ValueError(f"{value!r} is not a bucket name (no gs:// prefix, no path)")
        return value

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return value.strip("/")


ModelSource = Annotated[HuggingFaceModel | GCSModel, Field(discriminator="source")]


CapacityKind = Literal["reservation", "on_demand", "spot", "flex_start"]
# Cheapest sure thing first: capacity already paid for, then list price, then preemptible, then the DWS queue.
CAPACITY_ORDER: tuple[CapacityKind, ...] = ("reservation", "on_demand", "spot", "flex_start")


class CapacitySpec(_Strict):
    """Which kinds of capacity a run may take; compute_class mode tries them in CAPACITY_ORDER."""

    kinds: list[CapacityKind] = Field(default_factory=lambda: ["on_demand"], min_length=1,
                                      description="Any of reservation, on_demand, spot, flex_start.")
    reservation: str = Field("", description="Specific reservation to consume (needed with `reservation`).")
    reservation_project: str = Field("", description="Project owning a shared reservation; empty: the cluster's.")

    @model_validator(mode="after")
    def _reservation_named(self) -> CapacitySpec:
        if ("reservation" in self.kinds) != bool(self.reservation):
            raise ValueError("capacity: `reservation` in kinds and a reservation name go together")
        return self

    def ordered(self) -> list[CapacityKind]:
        return [kind for kind in CAPACITY_ORDER if kind in self.kinds]


class NodePoolSpec(_Strict):
    name: str = Field("", description="Empty: derived from the accelerator and its count.")
    machine_type: str = Field("", description="Empty: the smallest machine that carries the accelerators.")
    spot: bool = False
    node_locations: list[str] = Field(default_factory=list, description="Zones; empty: the cluster's.")
    disk_size_gb: int = Field(200, ge=50)
    nodes: int = Field(1, ge=1, le=16)
    on_release: ReleasePolicy = Field("delete", description="What to do with a pool this run created.")

    @field_validator("name")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        if value and not _NODE_POOL_NAME.match(value):
            raise ValueError("node pool names are lowercase letters, digits and '-', at most 40, starting a-z")
        return value


class Toleration(_Strict):
    key: str = Field(..., min_length=1)
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class RunnerSpec(_Strict):
    """Where the pipeline's own step pods run (the servers go where provisioning puts them)."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets to pull the servesweep image.")


class GKESpec(_Strict):
    """Where and how a run deploys its servers on GKE."""

    project: str = Field(..., min_length=1)
    location: str = Field(..., min_length=1, description="Region or zone of the cluster.")
    cluster: str = Field(..., min_length=1)
    namespace: str = "servesweep"
    runner_service_account: str = Field("servesweep-runner", description="KSA the pipeline steps run as.")
    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    runner_gcp_service_account: str | None = Field(
        None, description="GCP service account the runner KSA acts as (Workload Identity): node pools, GCS writes."
    )
    server_service_account: str | None = Field(
        None, description="KSA the server pods run as; needs bucket read through Workload Identity for GCS models."
    )
    provisioning: ProvisioningMode = "autoprovision"
    node_pool: NodePoolSpec = Field(default_factory=NodePoolSpec)
    compute_class: str = Field("", description="ComputeClass name; empty: derived from the accelerator.")
    capacity: CapacitySpec = Field(default_factory=CapacitySpec)
    model: ModelSource
    images: dict[str, str] = Field(default_factory=dict, description="Server kind -> image, overriding defaults.")
    cpu: str | None = Field(None, description="CPU request of the server container, e.g. '8'.")
    memory: str | None = Field(None, description="Memory request of the server container, e.g. '64Gi'.")
    shm_size: str = Field("16Gi", description="Size limit of the memory-backed /dev/shm of every server pod (NCCL "
                          "and the servers' worker processes pass tensors through it when accelerator.count > 1; "
                          "Docker's 64 MB default is too small for that). 16Gi holds TP 8; it counts against the "
                          "pod's memory only as far as it is used, so one GPU loses nothing.")
    scrape_interval_s: int = Field(5, ge=5, description="Managed Prometheus scrape interval.")

    @field_validator("namespace", "runner_service_account", "compute_class")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if value and not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a DNS label (lowercase letters, digits, '-', at most 63)")
        return value
