"""What GKE calls each accelerator, and which machine types carry how many of them.

Shared by provisioning (machine type of a node pool, ComputeClass priorities) and manifests (node
selectors, the extended resource to request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from servesweep.gke_spec import GKESpec

AcceleratorKind = Literal["gpu", "tpu"]

GPU_RESOURCE = "nvidia.com/gpu"
TPU_RESOURCE = "google.com/tpu"


@dataclass(frozen=True)
class AcceleratorInfo:
    name: str
    kind: AcceleratorKind
    memory_gib: int
    # (accelerators per node, machine type), ascending by count.
    machines: tuple[tuple[int, str], ...]
    # TPU only: chips per single-host slice -> topology label value.
    topologies: dict[int, str] = field(default_factory=dict)

    @property
    def resource(self) -> str:
        return GPU_RESOURCE if self.kind == "gpu" else TPU_RESOURCE


def _sizes(prefix: str, counts: tuple[int, ...], suffix: str) -> tuple[tuple[int, str], ...]:
    return tuple((n, f"{prefix}{n}{suffix}") for n in counts)


_SINGLE_HOST_TOPOLOGIES = {1: "1x1", 4: "2x2", 8: "2x4"}

# Checked against GKE's GPU docs ("About GPUs in GKE" / Compute Engine GPU machine types): the
# cloud.google.com/gke-accelerator values are GKE's accelerator type names (also Vertex AI's AcceleratorType
# enum: NVIDIA_L4, NVIDIA_TESLA_A100, NVIDIA_A100_80GB, NVIDIA_H100_80GB, NVIDIA_H200_141GB, NVIDIA_B200); G2 carries
# 1 L4 up to g2-standard-32, 2/4/8 on -24/-48/-96; A2 Standard a2-highgpu-{1,2,4,8}g and a2-megagpu-16g (A100 40GB),
# A2 Ultra a2-ultragpu-{1,2,4,8}g (A100 80GB); A3 High a3-highgpu-{1,2,4,8}g (H100); A3 Ultra a3-ultragpu-8g, eight
# H200s (cluster-toolkit v1.44.1 release notes); A4 a4-highgpu-8g, eight B200s.
# tests/unit/catalog/test_gke_catalog.py holds the planner's catalog (servesweep/data/accelerators.yaml) to the
# same machines.
ACCELERATORS: dict[str, AcceleratorInfo] = {
    info.name: info
    for info in (
        AcceleratorInfo("nvidia-l4", "gpu", 24, (
            (1, "g2-standard-8"), (2, "g2-standard-24"), (4, "g2-standard-48"), (8, "g2-standard-96"))),
        AcceleratorInfo("nvidia-tesla-a100", "gpu", 40,
                        _sizes("a2-highgpu-", (1, 2, 4, 8), "g") + ((16, "a2-megagpu-16g"),)),
        AcceleratorInfo("nvidia-a100-80gb", "gpu", 80, _sizes("a2-ultragpu-", (1, 2, 4, 8), "g")),
        # a3-highgpu-1g/2g/4g are only sold as Spot or flex-start capacity.
        AcceleratorInfo("nvidia-h100-80gb", "gpu", 80, _sizes("a3-highgpu-", (1, 2, 4, 8), "g")),
        AcceleratorInfo("nvidia-h200-141gb", "gpu", 141, ((8, "a3-ultragpu-8g"),)),
        AcceleratorInfo("nvidia-b200", "gpu", 180, ((8, "a4-highgpu-8g"),)),
        AcceleratorInfo("tpu-v5-lite-podslice", "tpu", 16, _sizes("ct5lp-hightpu-", (1, 4, 8), "t"),
                        _SINGLE_HOST_TOPOLOGIES),
        AcceleratorInfo("tpu-v6e-slice", "tpu", 32, _sizes("ct6e-standard-", (1, 4, 8), "t"),
                        _SINGLE_HOST_TOPOLOGIES),
    )
}


def accelerator_info(name: str) -> AcceleratorInfo:
    try:
        return ACCELERATORS[name]
    except KeyError:
        raise ValueError(f"accelerator {name!r} cannot run on GKE here; known: {', '.join(ACCELERATORS)}") from None


def machine_for(name: str, count: int) -> tuple[str, int]:
    """The smallest machine type carrying `count` accelerators, and how many it carries.

    A GPU pod may use fewer GPUs than its node has (H200 only comes eight to a machine); a TPU pod
    must take every chip of its single-host slice, so TPU counts must match a machine exactly.
    """
    info = accelerator_info(name)
    for per_node, machine in info.machines:
        if per_node == count or (info.kind == "gpu" and per_node > count):
            return machine, per_node
    sizes = ", ".join(str(n) for n, _ in info.machines)
    raise ValueError(f"{name} x{count} fits no single machine; per-node counts: {sizes}")


def tpu_topology(name: str, count: int) -> str:
    info = accelerator_info(name)
    if info.kind != "tpu":
        raise ValueError(f"{name} is not a TPU")
    machine_for(name, count)  # raises for a chip count no single-host slice has
    return info.topologies[count]


GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"


@dataclass(frozen=True)
class StepGPU:
    """One GPU for a pipeline step's pod (the quantize step's calibration): where it runs and what it asks for."""

    accelerator: str

    @property
    def node_selector(self) -> dict[str, str]:
        return {GKE_ACCELERATOR_LABEL: self.accelerator}

    @property
    def toleration(self) -> tuple[str, str, str]:
        """(key, operator, effect): GKE taints GPU nodes nvidia.com/gpu=present:NoSchedule."""
        return GPU_RESOURCE, "Exists", "NoSchedule"


def quantize_gpu(accelerator: str, gke: GKESpec | None) -> StepGPU | None:
    """The GPU the quantize step's pod asks for on GKE: one of the run's accelerator, when it is a GPU and
    `gke.quantize_on_gpu` holds; none with queued provisioning (no node comes without a ProvisioningRequest)."""
    if gke is None or not gke.quantize_on_gpu or gke.capacity.queued is not None:
        return None
    if accelerator == "cpu" or accelerator_info(accelerator).kind != "gpu":
        return None
    return StepGPU(accelerator)
