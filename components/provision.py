"""Provision step: make sure there is capacity for the servers the spec asks for.

Local platform: `cpu` needs room for the KV cache; a GPU accelerator needs that many GPUs of that
type on this host (seen through NVML). With `spec.gke`: node pool, auto-provisioning or ComputeClass
(servesweep.k8s.provision), recorded so the pipeline's exit handler can give it back (components.gke).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel

from servesweep.k8s.provision import Capacity as GKECapacity
from servesweep.spec import BenchmarkSpec


class Capacity(BaseModel):
    platform: Literal["local", "gke"] = "local"
    cpus: int = 0
    memory_gib: float = 0.0
    gpus: list[str] = []
    created: bool = False  # whether this run created capacity it must release
    gke: GKECapacity | None = None  # what GKE provisioning did; its node selector places the servers

    @property
    def node_selector(self) -> dict[str, str]:
        return dict(self.gke.node_selector) if self.gke else {}


# GKE accelerator type -> the words NVML puts in the device name.
_GPU_NAME_HINTS = {
    "nvidia-l4": "L4", "nvidia-tesla-a100": "A100", "nvidia-a100-80gb": "A100", "nvidia-h100-80gb": "H100",
    "nvidia-h200-141gb": "H200", "nvidia-b200": "B200",
}


class ProvisionError(RuntimeError):
    pass


def provision(spec: BenchmarkSpec, owner: str) -> Capacity:
    """Capacity for the spec's servers, on this machine or on its GKE cluster."""
    if spec.gke is None:
        return provision_local(spec)
    from components.gke import provision_gke

    capacity = provision_gke(spec, owner)
    return Capacity(platform="gke", created=capacity.created or capacity.resized, gke=capacity)


def provision_local(spec: BenchmarkSpec) -> Capacity:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    capacity = Capacity(platform="local", cpus=os.cpu_count() or 1, memory_gib=round(memory_gib, 1))
    if spec.accelerator.type == "cpu":
        if spec.server.cpu_kv_cache_gib + 2 > memory_gib:
            raise ProvisionError(f"server.cpu_kv_cache_gib={spec.server.cpu_kv_cache_gib} leaves too little of "
                                 f"this machine's {memory_gib:.1f} GiB")
        return capacity
    gpus = local_gpus()
    hint = _GPU_NAME_HINTS.get(spec.accelerator.type, "")
    chosen = spec.accelerator.device_ids
    if chosen is not None:
        if any(i >= len(gpus) or hint not in gpus[i] for i in chosen):
            raise ProvisionError(f"accelerator.device_ids {chosen} are not all {spec.accelerator.type} on this host "
                                 f"(GPUs here: {gpus or 'none'})")
        return capacity.model_copy(update={"gpus": [gpus[i] for i in chosen]})
    matching = [name for name in gpus if hint in name]
    if len(matching) < spec.accelerator.count:
        raise ProvisionError(
            f"accelerator {spec.accelerator.type} x{spec.accelerator.count} is not on this host "
            f"(GPUs here: {gpus or 'none'}); run on a GKE cluster or a host that has them"
        )
    return capacity.model_copy(update={"gpus": matching[: spec.accelerator.count]})


def local_gpus() -> list[str]:
    """Names of this host's NVIDIA GPUs (empty without NVML or GPUs)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver: no GPUs
        return []
    try:
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                 for i in range(pynvml.nvmlDeviceGetCount())]
        return [n.decode() if isinstance(n, bytes) else n for n in names]
    finally:
        pynvml.nvmlShutdown()
