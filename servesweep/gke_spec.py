"""GKE-only settings of a benchmark run: cluster, capacity mode, model source, images.

Kept out of spec.py on purpose: a local run never needs them. `BenchmarkSpec.gke` holds a `GKESpec`;
when it is set the steps' platform is GKE (servesweep.platform.gke).
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
# A Secret's name: a DNS subdomain (lowercase alphanumerics, '-' and '.', at most 253, alphanumeric at both ends).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HuggingFaceModel(_Strict):
    """Weights pulled from the Hugging Face hub by the server itself."""

    source: Literal["huggingface"] = Field("huggingface", description="Selects this source.")
    repo_id: str = Field(..., min_length=1, max_length=256, description="Hub model id, e.g. "
                         "meta-llama/Llama-3.1-8B-Instruct (1-256 characters).")
    revision: str | None = Field(None, description="Branch, tag or commit; None: the default branch.")
    token_secret: str | None = Field(
        "hf-token", description="Kubernetes Secret holding the hub token; None for public models."
    )
    token_key: str = Field("token", min_length=1, description="Key of the token inside that Secret.")


class GCSModel(_Strict):
    """Weights in a Cloud Storage bucket, mounted read-only through the GKE gcsfuse CSI driver."""

    source: Literal["gcs"] = Field("gcs", description="Selects this source.")
    bucket: str = Field(..., description="Bucket name, no gs:// prefix and no path (3-222 characters).")
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


class QueuedProvisioningSpec(_Strict):
    """Flex-start through GKE queued provisioning (Dynamic Workload Scheduler): each server first asks for its node
    with a ProvisioningRequest (class queued-provisioning.gke.io) and starts only once GKE has granted it."""

    timeout_s: int = Field(3600, ge=60, le=604_800, description="How long deploy-server waits for GKE to grant a "
                           "server's ProvisioningRequest, seconds, 60..604800 (7 days); past it, or when GKE marks "
                           "the request Failed, that deployment's points fail as NoCapacity and the sweep moves on. "
                           "server.startup_timeout_s starts counting once the node is granted.")
    max_run_duration_s: int | None = Field(None, ge=600, le=604_800, description="maxRunDurationSeconds of the "
                                           "request: GKE reclaims the node this long after granting it, seconds, "
                                           "600..604800; None: GKE's default, 7 days.")


class CapacitySpec(_Strict):
    """Which kinds of capacity a run may take; compute_class mode tries them in CAPACITY_ORDER."""

    kinds: list[CapacityKind] = Field(default_factory=lambda: list[CapacityKind](["on_demand"]), min_length=1,
                                      description="Any of reservation, on_demand, spot, flex_start.")
    reservation: str = Field("", description="Specific reservation to consume (needed with `reservation`).")
    reservation_project: str = Field("", description="Project owning a shared reservation; empty: the cluster's.")
    queued: QueuedProvisioningSpec | None = Field(
        None, description="Flex-start with queued provisioning (a ProvisioningRequest per server); needs kinds "
        "[flex_start] and provisioning node_pool. None: flex-start VMs without queueing.")

    @model_validator(mode="after")
    def _reservation_named(self) -> CapacitySpec:
        if ("reservation" in self.kinds) != bool(self.reservation):
            raise ValueError("capacity: `reservation` in kinds and a reservation name go together")
        if self.queued is not None and self.kinds != ["flex_start"]:
            raise ValueError("capacity.queued: queued provisioning is flex-start only: set kinds to [flex_start]")
        return self

    def ordered(self) -> list[CapacityKind]:
        return [kind for kind in CAPACITY_ORDER if kind in self.kinds]


class NodePoolSpec(_Strict):
    """The node pool of provisioning `node_pool`: created when missing, given back at the end of the run."""

    name: str = Field("", description="Node pool name (at most 40 characters); empty: derived from the "
                      "accelerator and its count.")
    machine_type: str = Field("", description="GCE machine type of the pool's nodes; empty: the smallest machine "
                              "that carries the accelerators.")
    spot: bool = Field(False, description="Spot VMs: cheaper, and GKE may preempt them mid-sweep.")
    node_locations: list[str] = Field(default_factory=list, description="Zones; empty: the cluster's.")
    disk_size_gb: int = Field(200, ge=50, le=65_536, description="Boot disk per node, GB, 50..65536 (the "
                              "server image and a hub checkpoint's cache live there).")
    nodes: int = Field(1, ge=1, le=16, description="Nodes in a pool this run creates or resizes, 1..16.")
    on_release: ReleasePolicy = Field("delete", description="What becomes of a pool this run created: delete it, "
                                      "or scale_to_zero (kept, empty, for the next run).")

    @field_validator("name")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        if value and not _NODE_POOL_NAME.match(value):
            raise ValueError("node pool names are lowercase letters, digits and '-', at most 40, starting a-z")
        return value


class Toleration(_Strict):
    """A Kubernetes toleration of a node taint."""

    key: str = Field(..., min_length=1, max_length=317, description="Taint key the toleration matches.")
    operator: Literal["Equal", "Exists"] = Field("Equal", description="Equal: the taint's value must be `value`; "
                                                 "Exists: any value.")
    value: str | None = Field(None, max_length=63, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect tolerated; None: every effect.")


class RunnerSpec(_Strict):
    """Where the pipeline's own step pods run (the servers go where provisioning puts them)."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the step pods must run "
                                          "on (label -> value); empty: anywhere.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints of those nodes the step pods "
                                          "tolerate.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets to pull the servesweep image.")


class GKESpec(_Strict):
    """Where and how a run deploys its servers on GKE."""

    project: str = Field(..., min_length=1, max_length=30, description="GCP project id of the cluster "
                         "(6-30 characters).")
    location: str = Field(..., min_length=1, max_length=64, description="Region or zone of the cluster.")
    cluster: str = Field(..., min_length=1, max_length=40, description="GKE cluster name (at most 40 characters).")
    namespace: str = Field("servesweep", description="Kubernetes namespace of the servers, their Services and "
                           "the capacity records (a DNS label, at most 63 characters).")
    runner_service_account: str = Field("servesweep-runner", description="KSA the pipeline steps run as (a DNS "
                                        "label).")
    runner: RunnerSpec = Field(default_factory=RunnerSpec, description="Where the pipeline's own step pods run.")
    runner_gcp_service_account: str | None = Field(
        None, description="GCP service account the runner KSA acts as (Workload Identity): node pools, GCS writes."
    )
    server_service_account: str | None = Field(
        None, description="KSA the server pods run as; needs bucket read through Workload Identity for GCS models."
    )
    provisioning: ProvisioningMode = Field(
        "autoprovision", description="How the accelerators are found: node_pool (created or resized by this run, "
        "given back after), autoprovision (GKE node auto-provisioning makes a pool for the pending pod) or "
        "compute_class (a ComputeClass names the accelerator).")
    node_pool: NodePoolSpec = Field(default_factory=NodePoolSpec, description="The pool of provisioning "
                                    "node_pool.")
    compute_class: str = Field("", description="ComputeClass name (a DNS label); empty: derived from the "
                               "accelerator.")
    capacity: CapacitySpec = Field(default_factory=CapacitySpec, description="Which kinds of capacity to try "
                                   "for the accelerators, in order (reservation, on-demand, spot, flex-start).")
    model: ModelSource = Field(..., description="Where the servers read the weights: gcs or huggingface.")
    images: dict[str, str] = Field(default_factory=dict, description="Server kind -> container image, overriding "
                                   "the defaults of servesweep/k8s/servers.py.")
    cpu: str | None = Field(None, description="CPU request of the server container, cores as a Kubernetes "
                            "quantity, e.g. '8'; None: the machine's share.")
    memory: str | None = Field(None, description="Memory request of the server container, bytes as a Kubernetes "
                               "quantity, e.g. '64Gi'.")
    shm_size: str = Field("16Gi", description="Size limit of the memory-backed /dev/shm of every server pod (NCCL "
                          "and the servers' worker processes pass tensors through it when accelerator.count > 1; "
                          "Docker's 64 MB default is too small for that). 16Gi holds TP 8; it counts against the "
                          "pod's memory only as far as it is used, so one GPU loses nothing.")
    scrape_interval_s: int = Field(5, ge=5, le=3600, description="Managed Prometheus scrape interval of the "
                                   "server pods (PodMonitoring), seconds, 5..3600.")
    object_store_secret: str | None = Field(
        None, max_length=253, description="Secret in `namespace` that KFP's launcher reads the pipeline root's "
        "object-store credentials from, when the kfp-launcher ConfigMap's provider is not `fromEnv` (e.g. "
        "mlpipeline-minio-artifact for KFP's default MinIO); the runner Role may `get` that one Secret by name. "
        "None: a gs:// pipeline root reached through Workload Identity (`fromEnv: true`), and no Secret is "
        "readable (a DNS subdomain, at most 253 characters).")

    read_nodes: bool = Field(
        True, description="Grant the runner a ClusterRole to `get` Nodes (servesweep-node-reader), so each run "
        "records its server node's machine type and accelerator in the runs table; false where cluster-scoped "
        "grants are not allowed (those fields then stay null, and runs.notes says why).")

    quantize_on_gpu: bool = Field(
        True, description="When the run's accelerator is a GPU, the quantize step's pod asks for one of it "
        "(nvidia.com/gpu: 1 on a node of that accelerator, tolerating the GPU taint), so llm-compressor calibrates "
        "on a GPU; false, or with capacity.queued (its nodes come only through ProvisioningRequests): on the "
        "runner's CPU nodes.")

    @model_validator(mode="after")
    def _queued_in_a_node_pool(self) -> GKESpec:
        # Queued provisioning runs on a node pool created with it enabled (GKE: `--enable-queued-provisioning`); a
        # ComputeClass or node auto-provisioning pool is not one servesweep can create that way.
        if self.capacity.queued is not None and (self.provisioning != "node_pool" or self.node_pool.spot):
            raise ValueError("capacity.queued: queued provisioning needs provisioning node_pool without "
                             "node_pool.spot")
        return self

    @field_validator("object_store_secret")
    @classmethod
    def _secret_name(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a Secret name (lowercase letters, digits, '-' and '.', at most 253)")
        return value

    @field_validator("namespace", "runner_service_account", "compute_class")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if value and not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a DNS label (lowercase letters, digits, '-', at most 63)")
        return value
