"""The CI workflow builds and pushes the runner image through Workload Identity Federation and compiles the
definitions pinned to the pushed digest; the cluster run uses that digest. No GitHub here: the YAML's shape."""

from __future__ import annotations

import yaml

from tests.support.paths import REPO

ROOT = REPO
CI = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yaml").read_text())


def _step(job: dict, uses: str) -> dict:
    [step] = [s for s in job["steps"] if s.get("uses", "").startswith(uses)]
    return step


def test_image_job_builds_the_dockerfile_and_pushes_with_workload_identity():
    job = CI["jobs"]["image"]
    assert job["permissions"]["id-token"] == "write"
    auth = _step(job, "google-github-actions/auth@")
    assert set(auth["with"]) == {"workload_identity_provider", "service_account", "token_format"}
    assert "credentials_json" not in auth["with"]  # no key
    build = _step(job, "docker/build-push-action@")
    assert build["with"]["file"] == "images/Dockerfile" and build["with"]["push"] is True
    assert (ROOT / build["with"]["file"]).is_file()
    assert "pull_request" in job["if"]  # forks get no identity


def test_compile_and_the_cluster_run_use_the_pushed_digest():
    job = CI["jobs"]["image"]
    build_id = _step(job, "docker/build-push-action@")["id"]
    [pinned] = [s for s in job["steps"] if s.get("id") == "pinned"]
    assert f"steps.{build_id}.outputs.digest" in pinned["run"] and "@" in pinned["run"]
    [compile_step] = [s for s in job["steps"] if "servesweep compile" in s.get("run", "")]
    assert compile_step["env"]["SERVESWEEP_IMAGE"] == "${{ steps.pinned.outputs.image }}"
    assert job["outputs"]["image"] == "${{ steps.pinned.outputs.image }}"
    trigger = CI["jobs"]["trigger"]
    assert "image" in trigger["needs"] and trigger["env"]["SERVESWEEP_IMAGE"].startswith(
        "${{ needs.image.outputs.image ||")


def test_docs_walk_from_an_empty_project_to_both_first_runs():
    docs = (ROOT / "docs" / "gke.md").read_text()
    for command in ("gcloud projects create", "gcloud artifacts repositories create",
                    "gcloud iam workload-identity-pools create", "gcloud container clusters create",
                    "servesweep submit --argo", "servesweep submit --kfp", "kfp-launcher"):
        assert command in docs, command
