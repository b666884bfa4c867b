"""Provision step: make sure there is capacity for the servers the spec asks for.

Local platform: the accelerator must be `cpu` and the machine must have room for the KV cache.
(GKE node pools, auto-provisioning and ComputeClasses live in servesweep.k8s.provision.)
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from servesweep.spec import BenchmarkSpec


class Capacity(BaseModel):
    platform: str
    cpus: int
    memory_gib: float
    created: bool = False  # whether this run created capacity it must release


class ProvisionError(RuntimeError):
    pass


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
