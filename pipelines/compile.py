"""Write every definition `make compile` produces.

    pipelines/servesweep_kfp.yaml      KFP package, local-platform defaults (upload it, or run it with the local runner)
    pipelines/servesweep_kfp_gke.yaml  KFP package with the runner pods' Kubernetes settings and the GKE spec's defaults
    pipelines/servesweep_argo.yaml     the same DAG as an Argo Workflow, the GKE spec's defaults
    deploy/rbac.yaml                   the runner's ServiceAccount and least-privilege Role(s)
    deploy/rbac-argo.yaml              on Argo, also: the step pods report their outputs (WorkflowTaskResults)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from servesweep.gke_spec import GKESpec
from servesweep.k8s.provision import default_name
from servesweep.k8s.rbac import argo_executor_manifests, rbac_manifests
from servesweep.spec import BenchmarkSpec, PipelineParams, public_dump, spec_to_params

KFP_LOCAL = "servesweep_kfp.yaml"
KFP_GKE = "servesweep_kfp_gke.yaml"
ARGO = "servesweep_argo.yaml"
RBAC = "rbac.yaml"
RBAC_ARGO = "rbac-argo.yaml"


def compile_kfp(path: str | Path, spec: BenchmarkSpec | None = None) -> Path:
    """The KFP package; with a spec its parameters default to the spec (server.env values withheld: the file is
    shared and uploaded), with `spec.gke` its pods run as it says."""
    from kfp import compiler

    from pipelines.kfp_pipeline import servesweep_pipeline
    from pipelines.kfp_platform import with_runner_platform
    from servesweep.k8s.accelerators import quantize_gpu

    pipeline = servesweep_pipeline
    if spec is not None and spec.gke is not None:
        gpu = quantize_gpu(spec.accelerator.type, spec.gke)
        pipeline = with_runner_platform(servesweep_pipeline, spec.gke, spec.server.external, gpu)
    defaults = None
    if spec is not None:
        # One line: KFP copies defaults into a comment header, and a multi-line one breaks the YAML there.
        # JSON is YAML, so spec_yaml reads it as it is.
        defaults = spec_to_params(spec).model_dump() | {"spec_yaml": json.dumps(public_dump(spec))}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(path), pipeline_parameters=defaults)
    _integer_defaults(path)
    return path


# KFP writes every number default through protobuf's Value, a double: `accelerator_count: 1.0`,
# `batch_sizes: [1.0, 4.0]`. The backend and the UI then offer floats for integer parameters; a list of
# them is not even typed (LIST), so nothing downstream restores the ints. Write them as the ints they are.
_INTEGER = {name for name, field in PipelineParams.model_fields.items() if field.annotation in (int, list[int])}
_HEADER_DEFAULT = re.compile(r"^(#\s+(\w+): \w+ \[Default: )(.*)\]$")
_WHOLE_FLOAT = re.compile(r"(\d+)\.0\b")


def _as_int(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_int(item) for item in value]
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _header_line(line: str) -> str:
    match = _HEADER_DEFAULT.match(line)
    if not match or match.group(2) not in _INTEGER:
        return line
    return match.group(1) + _WHOLE_FLOAT.sub(r"\1", match.group(3)) + "]"


def _integer_defaults(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    split = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    header = "".join(_header_line(line.rstrip("\n")) + "\n" for line in lines[:split])
    documents = list(yaml.safe_load_all("".join(lines[split:])))
    for name, parameter in documents[0]["root"].get("inputDefinitions", {}).get("parameters", {}).items():
        if name in _INTEGER and "defaultValue" in parameter:
            parameter["defaultValue"] = _as_int(parameter["defaultValue"])
    path.write_text(header + yaml.safe_dump_all(documents, sort_keys=False))


def compile_argo(path: str | Path, spec: BenchmarkSpec | None = None) -> Path:
    from pipelines.argo_workflow import build_workflow

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_workflow(spec).to_yaml())
    return path


def runner_rbac(gke: GKESpec, accelerator: str, count: int) -> list[dict]:
    """RBAC for the runner of a spec: a ComputeClass ClusterRole only in compute_class mode."""
    classes = [gke.compute_class or default_name(accelerator, count)] if gke.provisioning == "compute_class" else []
    return rbac_manifests(gke.namespace, gke.runner_service_account,
                          workload_identity_sa=gke.runner_gcp_service_account, compute_classes=classes,
                          object_store_secret=gke.object_store_secret, read_nodes=gke.read_nodes)


def write_rbac(deploy_dir: str | Path, spec: BenchmarkSpec) -> list[Path]:
    """The runner's RBAC for `spec`, and the Argo executor's, as YAML to `kubectl apply -f`."""
    if spec.gke is None:
        raise ValueError("RBAC manifests need a spec with a gke section")
    gke = spec.gke
    header = f"# Generated by `servesweep compile` from spec {spec.name!r}; apply once per namespace.\n"
    files = {
        RBAC: runner_rbac(gke, spec.accelerator.type, spec.accelerator.count),
        RBAC_ARGO: argo_executor_manifests(gke.namespace, gke.runner_service_account),
    }
    paths = []
    for name, manifests in files.items():
        path = Path(deploy_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + yaml.safe_dump_all(manifests, sort_keys=False))
        paths.append(path)
    return paths


def compile_all(out_dir: str | Path, gke_spec: BenchmarkSpec, deploy_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    return [
        compile_kfp(out / KFP_LOCAL),
        compile_kfp(out / KFP_GKE, gke_spec),
        compile_argo(out / ARGO, gke_spec),
        *write_rbac(deploy_dir, gke_spec),
    ]
