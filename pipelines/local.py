"""Run the KFP pipeline on this machine with KFP's local SubprocessRunner (no cluster, no Docker)."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from components.deploy_server import teardown_owner
from servesweep.spec import BenchmarkSpec, spec_to_params


class PipelineFailed(RuntimeError):
    pass


def run_locally(spec: BenchmarkSpec, pipeline_root: str | Path = "local_outputs") -> str:
    """Run the whole pipeline for `spec` (with a concrete run id); returns the lake URI.

    Servers live in a state directory private to this call, so whatever happens (a failed step,
    Ctrl-C) every server this run started is stopped before returning.
    """
    from kfp import local

    from pipelines.kfp_pipeline import servesweep_pipeline

    # Locally the steps run in this venv, not in the image the components name for the cluster.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    state_dir = tempfile.mkdtemp(prefix="servesweep-servers-")
    previous = os.environ.get("SERVESWEEP_STATE_DIR")
    os.environ["SERVESWEEP_STATE_DIR"] = state_dir  # the task subprocesses inherit it
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(Path(pipeline_root).resolve()),
               raise_on_error=True)
    try:
        servesweep_pipeline(**spec_to_params(spec).model_dump())
    except RuntimeError as error:  # KFP raises after the exit handler ran
        raise PipelineFailed(str(error)) from None
    finally:
        for owner in Path(state_dir).iterdir():
            if owner.is_dir():
                teardown_owner(owner.name)
        if previous is None:
            os.environ.pop("SERVESWEEP_STATE_DIR", None)
        else:
            os.environ["SERVESWEEP_STATE_DIR"] = previous
    return spec.lake_uri


def compile_pipeline(out_dir: str | Path) -> Path:
    from kfp import compiler

    from pipelines.kfp_pipeline import servesweep_pipeline

    path = Path(out_dir) / "servesweep_kfp.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(servesweep_pipeline, str(path))
    return path
