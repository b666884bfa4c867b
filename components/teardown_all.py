"""Teardown-all step (the pipeline's exit handler): stop whatever a pipeline job left running.

It runs on success, failure and cancel, and takes nothing from the steps it guards (an exit handler
cannot), only the job id and the pipeline's `spec_yaml` parameter, from which it reads `gke` alone:
a spec that failed validation must not stop the cleanup.
"""

from __future__ import annotations

from typing import Any

import yaml

from components.deploy_server import teardown_owner
from servesweep.gke_spec import GKESpec


def gke_section(spec_yaml: str) -> GKESpec | None:
    data: Any = yaml.safe_load(spec_yaml) if spec_yaml.strip() else None
    section = data.get("gke") if isinstance(data, dict) else None
    return GKESpec.model_validate(section) if section else None


def teardown_all(owner: str, spec_yaml: str = "") -> list[str]:
    """What was stopped or released: local server processes, or the job's GKE servers and capacity."""
    gke = gke_section(spec_yaml)
    if gke is None:
        return teardown_owner(owner)
    from components.gke import teardown_job

    return teardown_job(gke, owner)
