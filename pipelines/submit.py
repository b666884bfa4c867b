"""Start a benchmark run on a cluster: through a Kubeflow Pipelines backend or an Argo Workflows server.

The definition sent is compiled from the current code and the given spec (not read from the YAML
files under pipelines/), so what runs is what the spec says. Any failure to reach or to convince
the server becomes one `SubmitError` line; a token never appears in it.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import kfp
from hera.workflows import WorkflowsService

from pipelines.argo_workflow import build_workflow
from pipelines.compile import KFP_GKE, compile_kfp
from servesweep.gke_spec import GKESpec
from servesweep.spec import BenchmarkSpec, spec_to_params

ARGO_TOKEN_ENV = "ARGO_TOKEN"
KFP_TOKEN_ENV = "KFP_TOKEN"  # optional: a bearer token for KFP behind an auth proxy (e.g. from CI)
_SOCKET_ERROR = re.compile(r"\[Errno -?\d+\] [^\"')]+")


class SubmitError(RuntimeError):
    pass


@dataclass(frozen=True)
class Submitted:
    run_id: str  # the benchmark's run id: the lake partition its rows land in
    reference: str  # the orchestrator's id for the run (KFP run id, Argo workflow name)


def _require_gke(spec: BenchmarkSpec) -> BenchmarkSpec:
    _gke(spec)
    return spec


def _gke(spec: BenchmarkSpec) -> GKESpec:
    if spec.gke is None:
        raise SubmitError("the spec has no `gke` section: a cluster run needs one (docs/gke.md); "
                          "run it here with `servesweep run`")
    return spec.gke


def _one_line(error: Exception, secret: str | None = None) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if secret:
        text = text.replace(secret, "***")
    # urllib3 buries the socket error ("[Errno 111] Connection refused") in a paragraph about retries.
    if socket_error := _SOCKET_ERROR.search(text):
        return f"cannot connect: {socket_error.group(0)}"
    return f"{type(error).__name__}: {text[:300]}"


def _kfp_namespace(spec: BenchmarkSpec, namespace: str | None) -> str | None:
    """Multi-user Kubeflow files a run (and its experiment) under a profile namespace; single-user takes none.

    The runner's RoleBinding lives in gke.namespace, so a run anywhere else could not deploy a server.
    """
    if namespace and namespace != _gke(spec).namespace:
        raise SubmitError(f"--namespace {namespace} is not the spec's gke.namespace ({_gke(spec).namespace}), "
                          "where the runner's RBAC is bound (deploy/rbac.yaml)")
    return namespace or None


def submit_kfp(spec: BenchmarkSpec, host: str, experiment: str | None = None,
               namespace: str | None = None) -> Submitted:
    """Compile the GKE package for `spec` and start a run; the run's service account is the spec's runner KSA.

    `namespace`: the Kubeflow profile namespace on a multi-user install (where the experiment and run go).
    """
    # No run id given: resolve-spec derives it from KFP's run id (name + its first 8 characters), so a clone
    # or rerun from the UI, which copies these arguments, gets a partition of its own.
    spec = _require_gke(spec)
    namespace = _kfp_namespace(spec, namespace)
    token = os.environ.get(KFP_TOKEN_ENV) or None
    with tempfile.TemporaryDirectory(prefix="servesweep-kfp-") as tmp:
        package = compile_kfp(Path(tmp) / KFP_GKE, spec)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
                client = kfp.Client(host=host, existing_token=token)
            result = client.create_run_from_pipeline_package(
                # The package's defaults withhold server.env; the run's own arguments carry it to the server.
                str(package), arguments=spec_to_params(spec, withhold_env=False).model_dump(),
                run_name=spec.run_id or spec.with_run_id().run_id,
                experiment_name=experiment, namespace=namespace, service_account=_gke(spec).runner_service_account,
            )
        except Exception as error:  # the SDK raises whatever its HTTP stack raised
            raise SubmitError(f"KFP at {host} did not take the run: {_one_line(error, token)}") from None
    return Submitted(run_id=spec.with_run_id(result.run_id).run_id, reference=result.run_id)


def submit_argo(spec: BenchmarkSpec, host: str, namespace: str | None = None, verify_ssl: bool = True) -> Submitted:
    """Create the Workflow through the Argo server's API; the bearer token comes from $ARGO_TOKEN."""
    # No run id given: resolve-spec derives it from the workflow's uid, which the server assigns, so a resubmit
    # of this workflow (a new uid) gets a partition of its own.
    spec = _require_gke(spec)
    token = os.environ.get(ARGO_TOKEN_ENV) or None
    workflow = build_workflow(spec, withhold_env=False)
    workflow.namespace = namespace or _gke(spec).namespace
    workflow.workflows_service = WorkflowsService(host=host, token=token, namespace=workflow.namespace,
                                                  verify_ssl=verify_ssl)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # hera 7.1 calls pydantic's deprecated .json()
            created = workflow.create()
    except Exception as error:  # requests' and hera's errors alike
        raise SubmitError(f"Argo at {host} did not take the workflow: {_one_line(error, token)}") from None
    return Submitted(run_id=spec.with_run_id(created.metadata.uid or "").run_id, reference=created.metadata.name)
