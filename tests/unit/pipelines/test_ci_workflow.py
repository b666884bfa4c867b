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


def test_docs_create_what_the_example_spec_asks_of_the_cluster():
    """Read as a new user would run it: the walk creates the node pool the example spec's step pods select and
    tolerate, enables node auto-provisioning when the spec provisions that way, and runs standalone KFP's pipeline
    in `kubeflow` (where standalone KFP puts every run's pods) with the runner's RBAC and Workload Identity there."""
    from servesweep.spec import load_spec

    docs = (ROOT / "docs" / "gke.md").read_text()
    walk = docs.split("## From an empty GCP project to a first run", 1)[1].split("\n## ", 1)[0]
    gke = load_spec(ROOT / "specs" / "gke.yaml").gke
    assert gke is not None
    pool = gke.runner.node_selector["cloud.google.com/gke-nodepool"]
    assert f"gcloud container node-pools create {pool} " in walk
    for toleration in gke.runner.tolerations:
        assert f"--node-taints={toleration.key}=" in walk and f":{toleration.effect}" in walk
    if gke.provisioning == "autoprovision":
        assert "--enable-autoprovisioning" in walk and "--max-accelerator type=" in walk
    assert "gcloud billing projects link" in walk and "--workload-pool=" in walk
    kfp = walk.split("**8. A first KFP run.**", 1)[1]
    assert "namespace: kubeflow" in kfp and "runner_in kubeflow" in kfp
    assert "-n kubeflow create configmap kfp-launcher" in kfp
    # Every command the walk runs comes before the run that needs it.
    order = ["gcloud projects create", "gcloud container clusters create", "gcloud storage buckets create",
             "gcloud artifacts repositories create", "gcloud iam service-accounts create servesweep-runner",
             "specs/gke.yaml > my-gke.yaml", "servesweep submit --argo", "servesweep submit --kfp"]
    assert [walk.index(step) for step in order] == sorted(walk.index(step) for step in order)


def test_docs_install_an_argo_that_reads_every_field_the_workflow_uses():
    """`backoff.cap` (pipelines/argo_workflow.py) exists from Argo v3.7.0 (argo-workflows#13782, in the 3.7
    release notes); an older controller refuses the Workflow as an unknown field. The walk installs one that has it."""
    import re

    workflow = yaml.safe_load((ROOT / "pipelines" / "servesweep_argo.yaml").read_text())
    capped = [t["name"] for t in workflow["spec"]["templates"]
              if "cap" in (t.get("retryStrategy") or {}).get("backoff", {})]
    assert capped, "no template caps its backoff: this test's premise is gone, drop or adapt it"
    docs = (ROOT / "docs" / "gke.md").read_text()
    installed = re.findall(r"argo-workflows/releases/download/v(\d+)\.(\d+)\.(\d+)/", docs)
    assert installed and all((int(major), int(minor)) >= (3, 7) for major, minor, _ in installed)
    assert "Argo Workflows 3.7+" in docs
