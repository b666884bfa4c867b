"""Make sure the cluster has the accelerators a run asks for, and give back what the run added.

Three modes, chosen by `GKESpec.provisioning`:
- `node_pool`: a node pool of the right machine type, created through the GKE API when missing (and
  deleted, or scaled to zero, at release). A servesweep pool left at zero by an earlier run is
  scaled up and back down. A pool servesweep did not create is used as it is, never resized.
- `autoprovision`: nothing to create; node auto-provisioning builds a pool for the pending pod.
- `compute_class`: a ComputeClass (cloud.google.com/v1) whose priorities name the accelerator; GKE
  creates nodes for pods that select it.

The GKE API client and the Kubernetes custom-objects API are injected, so tests can record calls.
The identity running this needs container.clusters.get/update and container.operations.get on the
cluster (node_pool mode); ComputeClasses need the ClusterRole from rbac.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import container_v1
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from servesweep.gke_spec import CapacityKind, CapacitySpec, GKESpec, ProvisioningMode
from servesweep.k8s.accelerators import accelerator_info, machine_for, tpu_topology
from servesweep.k8s.capacity import Capacity
from servesweep.k8s.manifests import MANAGED_BY, MANAGED_BY_LABEL

COMPUTE_CLASS_GROUP = "cloud.google.com"
COMPUTE_CLASS_VERSION = "v1"
COMPUTE_CLASS_PLURAL = "computeclasses"

NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"
GPU_LABEL = "cloud.google.com/gke-accelerator"
TPU_LABEL = "cloud.google.com/gke-tpu-accelerator"
TPU_TOPOLOGY_LABEL = "cloud.google.com/gke-tpu-topology"
SPOT_LABEL = "cloud.google.com/gke-spot"
COMPUTE_CLASS_LABEL = "cloud.google.com/compute-class"

# GCP resource labels (not Kubernetes labels) mark the pools servesweep created.
_POOL_OWNER_KEY = "managed-by"


class ProvisionError(RuntimeError):
    pass


def default_name(accelerator: str, count: int) -> str:
    return f"servesweep-{accelerator}-x{count}"


def node_selector_for(
    mode: ProvisioningMode, accelerator: str, count: int, *, pool: str | None = None,
    compute_class: str | None = None, spot: bool = False,
) -> dict[str, str]:
    if mode == "compute_class":
        # The class pins the hardware; more hard selectors could contradict its fallbacks.
        return {COMPUTE_CLASS_LABEL: compute_class or default_name(accelerator, count)}
    if accelerator_info(accelerator).kind == "tpu":
        selector = {TPU_LABEL: accelerator, TPU_TOPOLOGY_LABEL: tpu_topology(accelerator, count)}
    else:
        selector = {GPU_LABEL: accelerator}
    if mode == "node_pool":
        selector[NODE_POOL_LABEL] = pool or default_name(accelerator, count)
    elif spot:
        selector[SPOT_LABEL] = "true"
    return selector


def _capacity_rule(kind: CapacityKind, capacity: CapacitySpec) -> dict[str, Any]:
    """One ComputeClass priority's provisioning model (fields as in GKE's ComputeClass CRD reference:
    priorities[].reservations {affinity: Specific, specific: [{name, project}]}, spot, flexStart {enabled})."""
    if kind == "reservation":
        reservation = {"name": capacity.reservation}
        if capacity.reservation_project:
            reservation["project"] = capacity.reservation_project
        return {"reservations": {"affinity": "Specific", "specific": [reservation]}}
    if kind == "flex_start":
        return {"flexStart": {"enabled": True}}
    return {"spot": kind == "spot"}


def capacity_for(gke: GKESpec) -> CapacitySpec:
    """The spec's capacity kinds; the older node_pool.spot flag still adds spot."""
    capacity = gke.capacity
    if gke.node_pool.spot and "spot" not in capacity.kinds:
        capacity = capacity.model_copy(update={"kinds": [*capacity.kinds, "spot"]})
    return capacity


def render_compute_class(name: str, accelerator: str, count: int,
                         capacity: CapacitySpec | None = None) -> dict[str, Any]:
    info = accelerator_info(accelerator)
    _, per_node = machine_for(accelerator, count)
    if info.kind == "tpu":
        hardware = {"tpu": {"type": accelerator, "count": per_node, "topology": tpu_topology(accelerator, count)}}
    else:
        hardware = {"gpu": {"type": accelerator, "count": per_node, "driverVersion": "latest"}}
    # Same hardware in every priority, cheapest sure capacity first: reservation, on-demand, spot, flex-start.
    capacity = capacity or CapacitySpec()
    priorities = [{**hardware, **_capacity_rule(kind, capacity)} for kind in capacity.ordered()]
    return {
        "apiVersion": f"{COMPUTE_CLASS_GROUP}/{COMPUTE_CLASS_VERSION}",
        "kind": "ComputeClass",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "spec": {
            "priorities": priorities,
            "nodePoolAutoCreation": {"enabled": True},
            "whenUnsatisfiable": "DoNotScaleUp",  # never fall back to other hardware: it would skew results
        },
    }


def _reservation_affinity(capacity: CapacitySpec) -> container_v1.ReservationAffinity:
    # A shared reservation is named by its path (GKE "consume reservations": key compute.googleapis.com/
    # reservation-name, values [NAME] or [projects/PROJECT/reservations/NAME]).
    name = capacity.reservation
    if capacity.reservation_project:
        name = f"projects/{capacity.reservation_project}/reservations/{name}"
    return container_v1.ReservationAffinity(
        consume_reservation_type=container_v1.ReservationAffinity.Type.SPECIFIC_RESERVATION,
        key="compute.googleapis.com/reservation-name", values=[name],
    )


def _pool_capacity(pool: container_v1.NodePool, config: container_v1.NodeConfig, kind: CapacityKind,
                   capacity: CapacitySpec, nodes: int) -> None:
    """A node pool has one provisioning model: the first kind the spec allows, in CAPACITY_ORDER."""
    if kind == "reservation":
        config.reservation_affinity = _reservation_affinity(capacity)
    elif kind == "spot":
        config.spot = True
    elif kind == "flex_start":
        # Flex-start VMs come only through the autoscaler, from zero, and never from a reservation. Google's
        # flex-start pool command (docs.cloud.google.com/ai-hypercomputer/docs/create/gke-ai-hypercompute-custom):
        # `--flex-start --enable-autoscaling --num-nodes=0 --total-max-nodes N --no-enable-autorepair
        # --location-policy=ANY --reservation-affinity=none [--enable-queued-provisioning]`. A flex-start VM is
        # not repaired (a repair would recreate it outside the grant), and the limit is over all zones.
        config.flex_start = True
        config.reservation_affinity = container_v1.ReservationAffinity(
            consume_reservation_type=container_v1.ReservationAffinity.Type.NO_RESERVATION)
        pool.initial_node_count = 0
        pool.management = container_v1.NodeManagement(auto_repair=False, auto_upgrade=pool.management.auto_upgrade)
        pool.autoscaling = container_v1.NodePoolAutoscaling(
            enabled=True, total_min_node_count=0, total_max_node_count=nodes,
            location_policy=container_v1.NodePoolAutoscaling.LocationPolicy.ANY)
        if capacity.queued is not None:
            # Queued provisioning (GKE "Run a large-scale workload with flex-start with queued provisioning",
            # docs.cloud.google.com/kubernetes-engine/docs/how-to/provisioningrequest): the flex-start pool above
            # plus `--enable-queued-provisioning`. In the API: NodePool.queued_
            # provisioning.enabled ("nodes can be only obtained through queuing via the Cluster Autoscaler
            # ProvisioningRequest API", container v1 reference), NodeConfig.flex_start, NO_RESERVATION, and
            # NodePoolAutoscaling.location_policy ANY. GKE taints such nodes cloud.google.com/gke-queued=true:
            # NoSchedule; the server pods tolerate it (manifests.py).
            pool.queued_provisioning = container_v1.NodePool.QueuedProvisioning(enabled=True)


def node_pool_for(gke: GKESpec, accelerator: str, count: int) -> container_v1.NodePool:
    spec = gke.node_pool
    machine, per_node = machine_for(accelerator, count)
    config = container_v1.NodeConfig(
        machine_type=spec.machine_type or machine,
        disk_size_gb=spec.disk_size_gb,
        labels={MANAGED_BY_LABEL: MANAGED_BY},
        resource_labels={_POOL_OWNER_KEY: MANAGED_BY},
        oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
    )
    if accelerator_info(accelerator).kind == "gpu":
        driver = container_v1.GPUDriverInstallationConfig(
            gpu_driver_version=container_v1.GPUDriverInstallationConfig.GPUDriverVersion.LATEST
        )
        config.accelerators = [container_v1.AcceleratorConfig(
            accelerator_type=accelerator,
            accelerator_count=count if spec.machine_type else per_node,
            gpu_driver_installation_config=driver,
        )]
    pool = container_v1.NodePool(
        name=spec.name or default_name(accelerator, count),
        initial_node_count=spec.nodes,
        locations=list(spec.node_locations),
        management=container_v1.NodeManagement(auto_repair=True, auto_upgrade=True),
    )
    capacity = capacity_for(gke)
    _pool_capacity(pool, config, "spot" if spec.spot else capacity.ordered()[0], capacity, spec.nodes)
    pool.config = config
    return pool


class GKEProvisioner:
    def __init__(
        self,
        gke: GKESpec,
        *,
        clusters: container_v1.ClusterManagerClient | None = None,
        custom: k8s.CustomObjectsApi | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        operation_timeout_s: float = 1800.0,
        poll_s: float = 10.0,
    ) -> None:
        self.gke = gke
        self._clusters = clusters
        self._custom = custom
        self._clock = clock
        self._sleep = sleep
        self._operation_timeout_s = operation_timeout_s
        self._poll_s = poll_s

    # --- entry points -------------------------------------------------------------------------

    def ensure(self, accelerator: str, count: int) -> Capacity:
        machine_for(accelerator, count)  # fail before any API call on an impossible shape
        mode = self.gke.provisioning
        if mode == "node_pool":
            return self._ensure_node_pool(accelerator, count)
        if mode == "compute_class":
            return self._ensure_compute_class(accelerator, count)
        selector = node_selector_for(mode, accelerator, count, spot=self.gke.node_pool.spot)
        return Capacity(mode=mode, accelerator=accelerator, count=count, node_selector=selector)

    def release(self, capacity: Capacity) -> None:
        """Undo what `ensure` added; a no-op for capacity it found in place."""
        if capacity.mode == "node_pool" and capacity.node_pool:
            self._release_node_pool(capacity)
        elif capacity.mode == "compute_class" and capacity.created and capacity.compute_class:
            self._delete_compute_class(capacity.compute_class)

    # --- node pools ---------------------------------------------------------------------------

    @property
    def _cluster_path(self) -> str:
        return f"projects/{self.gke.project}/locations/{self.gke.location}/clusters/{self.gke.cluster}"

    def _pool_path(self, name: str) -> str:
        return f"{self._cluster_path}/nodePools/{name}"

    def _client(self) -> container_v1.ClusterManagerClient:
        if self._clusters is None:
            self._clusters = container_v1.ClusterManagerClient()
        return self._clusters

    def _ensure_node_pool(self, accelerator: str, count: int) -> Capacity:
        wanted = node_pool_for(self.gke, accelerator, count)
        capacity = Capacity(
            mode="node_pool", accelerator=accelerator, count=count, node_pool=wanted.name,
            node_selector=node_selector_for("node_pool", accelerator, count, pool=wanted.name),
        )
        try:
            existing = self._client().get_node_pool(name=self._pool_path(wanted.name))
        except NotFound:
            self._wait(self._client().create_node_pool(parent=self._cluster_path, node_pool=wanted))
            return capacity.model_copy(update={"created": True})
        _check_same_hardware(existing, wanted)
        if existing.config.resource_labels.get(_POOL_OWNER_KEY) != MANAGED_BY:
            return capacity  # someone else's pool: use it, never resize it
        self._resize(wanted.name, self.gke.node_pool.nodes)
        return capacity.model_copy(update={"resized": True})

    def _release_node_pool(self, capacity: Capacity) -> None:
        name = capacity.node_pool
        if name is None:  # node_pool mode always records its pool
            raise ProvisionError(f"node_pool capacity without a pool name: {capacity.model_dump_json()}")
        try:
            if capacity.created and self.gke.node_pool.on_release == "delete":
                self._wait(self._client().delete_node_pool(name=self._pool_path(name)))
            elif capacity.created or capacity.resized:
                self._resize(name, 0)
        except NotFound:
            pass  # already gone

    def _resize(self, name: str, nodes: int) -> None:
        request = {"name": self._pool_path(name), "node_count": nodes}
        self._wait(self._client().set_node_pool_size(request=request))

    def _wait(self, operation: container_v1.Operation) -> None:
        deadline = self._clock() + self._operation_timeout_s
        while operation.status != container_v1.Operation.Status.DONE:
            if self._clock() >= deadline:
                raise ProvisionError(f"GKE operation {operation.name} ({operation.operation_type.name}) "
                                     f"not done after {self._operation_timeout_s:.0f}s")
            self._sleep(self._poll_s)
            path = f"projects/{self.gke.project}/locations/{self.gke.location}/operations/{operation.name}"
            operation = self._client().get_operation(name=path)
        if operation.error.code or operation.error.message:
            raise ProvisionError(f"GKE operation {operation.name} ({operation.operation_type.name}) failed: "
                                 f"{operation.error.message or operation.error.code}")

    # --- ComputeClass -------------------------------------------------------------------------

    def _custom_api(self) -> k8s.CustomObjectsApi:
        if self._custom is None:
            self._custom = k8s.CustomObjectsApi()
        return self._custom

    def _ensure_compute_class(self, accelerator: str, count: int) -> Capacity:
        name = self.gke.compute_class or default_name(accelerator, count)
        capacity = Capacity(
            mode="compute_class", accelerator=accelerator, count=count, compute_class=name,
            node_selector=node_selector_for("compute_class", accelerator, count, compute_class=name),
        )
        api, ids = self._custom_api(), _compute_class_ids()
        try:
            api.get_cluster_custom_object(**ids, name=name)
            return capacity
        except ApiException as error:
            if error.status != 404:
                raise
        api.create_cluster_custom_object(
            **ids, body=render_compute_class(name, accelerator, count, capacity_for(self.gke))
        )
        return capacity.model_copy(update={"created": True})

    def _delete_compute_class(self, name: str) -> None:
        try:
            self._custom_api().delete_cluster_custom_object(**_compute_class_ids(), name=name)
        except ApiException as error:
            if error.status != 404:
                raise


def _compute_class_ids() -> dict[str, str]:
    return {"group": COMPUTE_CLASS_GROUP, "version": COMPUTE_CLASS_VERSION, "plural": COMPUTE_CLASS_PLURAL}


def _check_same_hardware(existing: container_v1.NodePool, wanted: container_v1.NodePool) -> None:
    """A pool of that name but other hardware would benchmark the wrong machine: refuse it."""
    def hardware(pool: container_v1.NodePool) -> tuple[str, tuple[tuple[str, int], ...]]:
        accelerators = tuple((a.accelerator_type, a.accelerator_count) for a in pool.config.accelerators)
        return pool.config.machine_type, accelerators

    if hardware(existing) != hardware(wanted):
        raise ProvisionError(f"node pool {existing.name!r} exists with {hardware(existing)}, "
                             f"but this run needs {hardware(wanted)}")
