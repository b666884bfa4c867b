"""The compiled files committed under pipelines/ and deploy/ are what `servesweep compile` makes of the current code
and specs/gke.yaml: a change to a step, a parameter or the RBAC that forgot to regenerate them fails here.

Regenerate: SERVESWEEP_IMAGE=us-docker.pkg.dev/servesweep/servesweep/servesweep:0.1.0 \
    python -m servesweep.cli compile --out pipelines/ --gke-spec specs/gke.yaml --deploy-out deploy/
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipelines.compile import ARGO, KFP_GKE, KFP_LOCAL, RBAC, RBAC_ARGO
from tests.support.paths import REPO

COMMITTED_IMAGE = "us-docker.pkg.dev/servesweep/servesweep/servesweep:0.1.0"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    # A process of its own, as the command runs: hera, once imported, changes how PyYAML writes multi-line strings,
    # so KFP's YAML in a process that imported hera first (as this test session does) differs from the CLI's.
    out = tmp_path_factory.mktemp("compiled")
    env = {**os.environ, "SERVESWEEP_IMAGE": COMMITTED_IMAGE, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "servesweep.cli", "compile", "--out", str(out),
               "--gke-spec", str(REPO / "specs" / "gke.yaml"), "--deploy-out", str(out / "deploy")]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("name", [f"pipelines/{ARGO}", f"pipelines/{KFP_LOCAL}", f"pipelines/{KFP_GKE}",
                                  f"deploy/{RBAC}", f"deploy/{RBAC_ARGO}"])
def test_committed_compiled_file_is_what_compile_makes_now(fresh, name):
    folder, file = name.split("/")
    made = (fresh / ("deploy" if folder == "deploy" else "") / file).read_text()
    assert (REPO / name).read_text() == made, f"{name} is stale: regenerate it (see this test's docstring)"
