"""Capacity: node pools through a fake GKE API, ComputeClasses through a fake custom-objects API."""

from __future__ import annotations

import pytest
from google.cloud import container_v1

from servesweep.gke_spec import CapacitySpec, GKESpec
from servesweep.k8s.accelerators import machine_for, tpu_topology
from servesweep.k8s.provision import GKEProvisioner, ProvisionError, node_pool_for, render_compute_class
from servesweep.k8s.validate import validate_manifest
from tests.support.k8s_fakes import FakeClock, FakeClusterManager, FakeCustom

CLUSTER = "projects/bench-project/locations/us-central1/clusters/bench"


def gke(provisioning: str = "node_pool", **node_pool) -> GKESpec:
    return GKESpec(
        project="bench-project", location="us-central1", cluster="bench", provisioning=provisioning,
        node_pool=node_pool, model={"source": "huggingface", "repo_id": "meta-llama/Llama-3.1-8B-Instruct"},
    )


def provisioner(spec: GKESpec, clusters=None, custom=None, clock: FakeClock | None = None, **kwargs):
    clock = clock or FakeClock()
    return GKEProvisioner(spec, clusters=clusters, custom=custom, clock=clock, sleep=clock.sleep, poll_s=10.0,
                          **kwargs)


@pytest.mark.parametrize(("accelerator", "count", "machine", "per_node"), [
    ("nvidia-l4", 1, "g2-standard-8", 1),
    ("nvidia-l4", 3, "g2-standard-48", 4),
    ("nvidia-tesla-a100", 16, "a2-megagpu-16g", 16),
    ("nvidia-a100-80gb", 2, "a2-ultragpu-2g", 2),
    ("nvidia-h100-80gb", 8, "a3-highgpu-8g", 8),
    ("nvidia-h200-141gb", 2, "a3-ultragpu-8g", 8),
    ("tpu-v5-lite-podslice", 8, "ct5lp-hightpu-8t", 8),
    ("tpu-v6e-slice", 4, "ct6e-standard-4t", 4),
])
def test_machine_mapping(accelerator: str, count: int, machine: str, per_node: int):
    assert machine_for(accelerator, count) == (machine, per_node)


def test_impossible_shapes_are_refused():
    with pytest.raises(ValueError, match="fits no single machine"):
        machine_for("nvidia-h100-80gb", 16)
    with pytest.raises(ValueError, match="fits no single machine"):
        machine_for("tpu-v5-lite-podslice", 2)
    with pytest.raises(ValueError, match="cannot run on GKE"):
        machine_for("cpu", 1)
    assert tpu_topology("tpu-v5-lite-podslice", 8) == "2x4"


def test_creates_a_missing_pool_and_deletes_it_at_release():
    clusters, clock = FakeClusterManager(polls=3), FakeClock()
    prov = provisioner(gke(), clusters, clock=clock)
    capacity = prov.ensure("nvidia-h100-80gb", 8)
    assert capacity.created and not capacity.resized
    assert capacity.node_pool == "servesweep-nvidia-h100-80gb-x8"
    assert capacity.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
                                      "cloud.google.com/gke-nodepool": "servesweep-nvidia-h100-80gb-x8"}
    assert clusters.mutations() == [("create_node_pool", CLUSTER, "servesweep-nvidia-h100-80gb-x8")]
    assert clock.sleeps == [10.0, 10.0, 10.0]  # polled the operation until DONE
    pool = clusters.pools["servesweep-nvidia-h100-80gb-x8"]
    assert pool.config.machine_type == "a3-highgpu-8g"
    accelerator = pool.config.accelerators[0]
    assert (accelerator.accelerator_type, accelerator.accelerator_count) == ("nvidia-h100-80gb", 8)
    assert accelerator.gpu_driver_installation_config.gpu_driver_version.name == "LATEST"
    assert pool.initial_node_count == 1
    assert pool.config.resource_labels["managed-by"] == "servesweep"

    prov.release(capacity)
    assert clusters.mutations()[-1] == ("delete_node_pool", f"{CLUSTER}/nodePools/servesweep-nvidia-h100-80gb-x8")
    assert not clusters.pools


def test_scale_to_zero_instead_of_delete():
    clusters = FakeClusterManager()
    prov = provisioner(gke(on_release="scale_to_zero", spot=True, nodes=2), clusters)
    capacity = prov.ensure("nvidia-l4", 1)
    assert clusters.pools["servesweep-nvidia-l4-x1"].config.spot is True
    assert clusters.pools["servesweep-nvidia-l4-x1"].initial_node_count == 2
    prov.release(capacity)
    assert clusters.mutations()[-1] == ("set_node_pool_size", f"{CLUSTER}/nodePools/servesweep-nvidia-l4-x1", 0)


def test_scales_up_a_servesweep_pool_left_at_zero_and_back_down():
    clusters = FakeClusterManager()
    clusters.pools["servesweep-nvidia-l4-x1"] = node_pool_for(gke(), "nvidia-l4", 1)
    prov = provisioner(gke(), clusters)
    capacity = prov.ensure("nvidia-l4", 1)
    assert capacity.resized and not capacity.created
    prov.release(capacity)
    pool_path = f"{CLUSTER}/nodePools/servesweep-nvidia-l4-x1"
    assert clusters.mutations() == [("set_node_pool_size", pool_path, 1), ("set_node_pool_size", pool_path, 0)]


def test_never_touches_someone_elses_pool():
    clusters = FakeClusterManager()
    theirs = node_pool_for(gke(), "nvidia-l4", 1)
    theirs.config.resource_labels.clear()
    clusters.pools[theirs.name] = theirs
    prov = provisioner(gke(), clusters)
    capacity = prov.ensure("nvidia-l4", 1)
    prov.release(capacity)
    assert not capacity.created and not capacity.resized
    assert clusters.mutations() == []


def test_refuses_a_pool_of_that_name_with_other_hardware():
    clusters = FakeClusterManager()
    clusters.pools["shared-gpus"] = node_pool_for(gke(name="shared-gpus"), "nvidia-l4", 1)
    with pytest.raises(ProvisionError, match="g2-standard-8"):
        provisioner(gke(name="shared-gpus"), clusters).ensure("nvidia-h100-80gb", 8)
    assert clusters.mutations() == []


def test_operation_errors_and_timeouts_raise():
    with pytest.raises(ProvisionError, match="GPU quota exceeded"):
        provisioner(gke(), FakeClusterManager(error="GPU quota exceeded in us-central1")).ensure("nvidia-l4", 1)
    clock = FakeClock()
    with pytest.raises(ProvisionError, match="not done after 60s"):
        provisioner(gke(), FakeClusterManager(polls=1000), clock=clock, operation_timeout_s=60).ensure("nvidia-l4", 1)
    assert sum(clock.sleeps) <= 70


def test_tpu_pool_has_no_gpu_accelerators_and_tpu_selectors():
    clusters = FakeClusterManager()
    capacity = provisioner(gke(), clusters).ensure("tpu-v5-lite-podslice", 8)
    pool = clusters.pools["servesweep-tpu-v5-lite-podslice-x8"]
    assert pool.config.machine_type == "ct5lp-hightpu-8t"
    assert list(pool.config.accelerators) == []
    assert capacity.node_selector == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
        "cloud.google.com/gke-tpu-topology": "2x4",
        "cloud.google.com/gke-nodepool": "servesweep-tpu-v5-lite-podslice-x8",
    }


def test_autoprovision_creates_nothing():
    clusters = FakeClusterManager()
    prov = provisioner(gke("autoprovision", spot=True), clusters)
    capacity = prov.ensure("nvidia-a100-80gb", 4)
    prov.release(capacity)
    assert clusters.calls == []
    assert capacity.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb",
                                      "cloud.google.com/gke-spot": "true"}


def test_compute_class_is_created_selected_and_removed():
    custom = FakeCustom()
    prov = provisioner(gke("compute_class"), custom=custom)
    capacity = prov.ensure("nvidia-h200-141gb", 4)
    name = "servesweep-nvidia-h200-141gb-x4"
    assert capacity.created and capacity.compute_class == name
    assert capacity.node_selector == {"cloud.google.com/compute-class": name}
    body = custom.objects[("computeclasses", name)]
    validate_manifest(body)
    assert body["spec"]["priorities"] == [
        {"gpu": {"type": "nvidia-h200-141gb", "count": 8, "driverVersion": "latest"}, "spot": False}]
    assert body["spec"]["whenUnsatisfiable"] == "DoNotScaleUp"
    prov.release(capacity)
    assert ("delete", "computeclasses", name) in custom.calls
    assert not custom.objects


def test_existing_compute_class_is_used_not_deleted():
    custom = FakeCustom()
    custom.objects[("computeclasses", "gpu-l4")] = render_compute_class("gpu-l4", "nvidia-l4", 1)
    spec = GKESpec(project="p", location="us-central1", cluster="c", provisioning="compute_class",
                   compute_class="gpu-l4", model={"source": "gcs", "bucket": "models"})
    prov = provisioner(spec, custom=custom)
    capacity = prov.ensure("nvidia-l4", 1)
    prov.release(capacity)
    assert not capacity.created
    assert [c for c in custom.calls if c[0] != "get"] == []


def test_compute_class_tries_reservation_on_demand_spot_then_flex_start_on_the_same_tpu():
    capacity = CapacitySpec(kinds=["flex_start", "spot", "on_demand", "reservation"], reservation="v6e-res",
                            reservation_project="shared-project")
    body = render_compute_class("tpu", "tpu-v6e-slice", 8, capacity)
    validate_manifest(body)
    tpu = {"type": "tpu-v6e-slice", "count": 8, "topology": "2x4"}
    assert body["spec"]["priorities"] == [
        {"tpu": tpu, "reservations": {"affinity": "Specific",
                                      "specific": [{"name": "v6e-res", "project": "shared-project"}]}},
        {"tpu": tpu, "spot": False}, {"tpu": tpu, "spot": True}, {"tpu": tpu, "flexStart": {"enabled": True}}]
    assert body["spec"]["whenUnsatisfiable"] == "DoNotScaleUp"  # never other hardware


def test_node_pool_spot_flag_still_adds_spot_after_on_demand_in_a_compute_class():
    custom = FakeCustom()
    prov = provisioner(gke("compute_class", spot=True), custom=custom)
    prov.ensure("nvidia-l4", 1)
    [body] = custom.objects.values()
    assert [rule.get("spot") for rule in body["spec"]["priorities"]] == [False, True]


def test_a_reservation_needs_its_name():
    with pytest.raises(ValueError, match="reservation"):
        CapacitySpec(kinds=["reservation"])


def _pool(**capacity) -> container_v1.NodePool:
    spec = gke().model_copy(update={"capacity": CapacitySpec(**capacity)})
    return node_pool_for(spec, "nvidia-l4", 1)


def test_node_pool_consumes_the_named_reservation_first():
    pool = _pool(kinds=["spot", "reservation"], reservation="l4-res", reservation_project="shared")
    affinity = pool.config.reservation_affinity
    assert affinity.consume_reservation_type == container_v1.ReservationAffinity.Type.SPECIFIC_RESERVATION
    assert (affinity.key, list(affinity.values)) == ("compute.googleapis.com/reservation-name",
                                                     ["projects/shared/reservations/l4-res"])
    assert not pool.config.spot


def test_flex_start_node_pool_scales_from_zero_without_reservations():
    pool = _pool(kinds=["flex_start"])
    assert pool.config.flex_start and pool.initial_node_count == 0
    autoscaling = pool.autoscaling
    assert autoscaling.enabled and (autoscaling.total_min_node_count, autoscaling.total_max_node_count) == (0, 1)
    assert (autoscaling.min_node_count, autoscaling.max_node_count) == (0, 0)  # the total limits, not per zone
    assert not pool.management.auto_repair and pool.management.auto_upgrade  # --no-enable-autorepair
    assert pool.config.reservation_affinity.consume_reservation_type == (
        container_v1.ReservationAffinity.Type.NO_RESERVATION)
