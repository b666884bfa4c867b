"""The platform a run's servers live on, chosen once from the spec: the steps call it and never ask which it is.

A platform provisions capacity, makes the spec's checkpoint available to its servers, deploys and stops
servers, stops everything a pipeline job left behind, and says where server logs go. `local` runs servers
as processes on this machine; `gke` as Deployments on the spec's GKE cluster (the [gke] extra); `external`
benchmarks an endpoint that already runs (`server.kind: external`) and deploys nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import yaml

from servesweep.extras import require
from servesweep.gke_spec import GKESpec
from servesweep.platform.types import Capacity, Endpoint, ModelInfo, PlatformName, ServerRequest
from servesweep.spec import BenchmarkSpec


class Platform(Protocol):
    """What a step may ask of the platform it is handed."""

    @property
    def name(self) -> PlatformName:
        """The platform's name, as Endpoint.platform records it."""
        ...

    def provision(self, spec: BenchmarkSpec, owner: str) -> Capacity:
        """Capacity for the spec's servers; what it creates is recorded so `teardown_job` can give it back."""
        ...

    def fetch_checkpoint(self, spec: BenchmarkSpec, out_dir: Path) -> ModelInfo:
        """Make the spec's checkpoint loadable by its servers (generate, publish or find it); `out_dir` gets
        what the later steps read (config.json, tokenizer)."""
        ...

    def deploy_server(self, spec: BenchmarkSpec, request: ServerRequest) -> Endpoint:
        """Start a server and wait until it answers; whatever stops it is `Endpoint.error`, not an exception."""
        ...

    def teardown_server(self, endpoint: Endpoint, owner: str) -> None:
        """Stop one server; idempotent."""
        ...

    def teardown_job(self, owner: str) -> list[str]:
        """Stop every server and release all capacity of a pipeline job; returns what was stopped or released."""
        ...

    def log_dir(self, owner: str) -> Path | None:
        """Where this platform writes the job's server logs; None where it keeps them itself (pod logs)."""
        ...


def platform_for(spec: BenchmarkSpec) -> Platform:
    """The spec's platform: an external endpoint's when server.kind is external, else GKE when it has a `gke`
    section, else this machine."""
    if spec.server.kind == "external":
        return _external_platform()
    return platform_from(spec.gke)


def platform_from(gke: GKESpec | None) -> Platform:
    """The platform of a spec's platform section alone (the exit handler reads no more of the spec)."""
    if gke is None:
        from servesweep.platform.local import LocalPlatform

        return LocalPlatform()
    return _gke_platform(gke)


def platform_from_yaml(spec_yaml: str) -> Platform:
    """The platform of a spec given as YAML, read from its platform section alone: an exit handler must clean
    up even after the rest of the spec failed validation."""
    return platform_from(gke_section(spec_yaml))


def gke_section(spec_yaml: str) -> GKESpec | None:
    data: Any = yaml.safe_load(spec_yaml) if spec_yaml.strip() else None
    section = data.get("gke") if isinstance(data, dict) else None
    return GKESpec.model_validate(section) if section else None


def platform_of(endpoint: Endpoint) -> Platform:
    """The platform that deployed `endpoint`: stopping one server needs nothing else."""
    if endpoint.platform == "external":
        return _external_platform()
    return platform_from(None) if endpoint.platform == "local" else _gke_platform(None)


def _external_platform() -> Platform:
    from servesweep.platform.external import ExternalPlatform

    return ExternalPlatform()


def _gke_platform(gke: GKESpec | None) -> Platform:
    require("kubernetes", extra="gke", purpose="a run on GKE")
    from servesweep.platform.gke import GKEPlatform

    return GKEPlatform(gke)
