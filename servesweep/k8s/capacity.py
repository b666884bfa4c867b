"""What GKE provisioning did, as data: no Kubernetes or GKE client is imported here, so the platform's
shared types can carry it without the [gke] extra installed."""

from __future__ import annotations

from pydantic import BaseModel

from servesweep.gke_spec import ProvisioningMode


class Capacity(BaseModel):
    """What provisioning did, passed (as JSON) to the deploy step and to the release at the end."""

    mode: ProvisioningMode
    accelerator: str
    count: int
    node_selector: dict[str, str]
    node_pool: str | None = None
    compute_class: str | None = None
    created: bool = False  # this run created the pool or class and must remove it
    resized: bool = False  # this run scaled a servesweep pool up and must scale it back to zero
