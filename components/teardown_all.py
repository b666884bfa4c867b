"""Teardown-all step (the pipeline's exit handler): stop whatever a pipeline job left running.

It runs on success, failure and cancel, and takes nothing from the steps it guards (an exit handler
cannot), only the job id and the pipeline's `spec_yaml` parameter, from which the platform is chosen by
its section alone: a spec that failed validation must not stop the cleanup.
"""

from __future__ import annotations

from servesweep.platform import Platform, platform_from_yaml


def teardown_all(owner: str, spec_yaml: str = "", platform: Platform | None = None) -> list[str]:
    """What was stopped or released: the job's servers and the capacity it added, on the spec's platform."""
    return (platform or platform_from_yaml(spec_yaml)).teardown_job(owner)
