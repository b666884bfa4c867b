"""Provision step: make sure there is capacity for the servers the spec asks for, on the spec's platform.

Locally: room for a CPU server's KV cache, or the spec's GPUs on this host. On GKE: a node pool,
auto-provisioning or a ComputeClass, recorded so the pipeline's exit handler can give it back.
"""

from __future__ import annotations

from servesweep.platform import Platform, platform_for
from servesweep.platform.types import Capacity
from servesweep.spec import BenchmarkSpec


def provision(spec: BenchmarkSpec, owner: str, platform: Platform | None = None) -> Capacity:
    """Capacity for the spec's servers; ProvisionError when the platform cannot give it."""
    return (platform or platform_for(spec)).provision(spec, owner)
