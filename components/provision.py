"""Provision step: make sure there is capacity for the servers the spec asks for.

Local platform: the accelerator must be `cpu` and the machine must have room for the KV cache.
With `spec.gke`: node pool, auto-provisioning or ComputeClass (servesweep.k8s.provision), recorded
so the pipeline's exit handler can give it back (components.gke).
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
    created: bool = False  # whether this run created capacity it must release
    gke: GKECapacity | None = None  # what GKE provisioning did; its node selector places the servers

    @property
    def node_selector(self) -> dict[str, str]:
        return dict(self.gke.node_selector) if self.gke else {}


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
    if spec.accelerator.type != "cpu":
        raise ProvisionError(
            f"accelerator {spec.accelerator.type!r} needs a GKE cluster; locally only 'cpu' is available"
        )
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    if spec.server.cpu_kv_cache_gib + 2 > memory_gib:
        raise ProvisionError(f"server.cpu_kv_cache_gib={spec.server.cpu_kv_cache_gib} leaves too little of "
                             f"this machine's {memory_gib:.1f} GiB")
    return Capacity(platform="local", cpus=os.cpu_count() or 1, memory_gib=round(memory_gib, 1))
