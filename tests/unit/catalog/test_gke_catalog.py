"""The accelerators GKE is asked for: labels and machine types as GKE documents them (cited in
servesweep/k8s/accelerators.py), and the planner's price catalog agreeing with them machine for machine."""

from __future__ import annotations

import yaml

from servesweep.k8s.accelerators import ACCELERATORS
from tests.support.paths import REPO

CATALOG = REPO / "servesweep" / "data" / "accelerators.yaml"
GKE_GPUS = {  # gke-accelerator label -> {machine type: GPUs per machine}
    "nvidia-l4": {"g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
                  "g2-standard-32": 1, "g2-standard-24": 2, "g2-standard-48": 4, "g2-standard-96": 8},
    "nvidia-tesla-a100": {"a2-highgpu-1g": 1, "a2-highgpu-2g": 2, "a2-highgpu-4g": 4, "a2-highgpu-8g": 8,
                          "a2-megagpu-16g": 16},
    "nvidia-a100-80gb": {"a2-ultragpu-1g": 1, "a2-ultragpu-2g": 2, "a2-ultragpu-4g": 4, "a2-ultragpu-8g": 8},
    "nvidia-h100-80gb": {"a3-highgpu-1g": 1, "a3-highgpu-2g": 2, "a3-highgpu-4g": 4, "a3-highgpu-8g": 8},
    "nvidia-h200-141gb": {"a3-ultragpu-8g": 8},
    "nvidia-b200": {"a4-highgpu-8g": 8},
}


def test_provisioning_uses_gkes_labels_and_machine_types():
    gpus = {name: info for name, info in ACCELERATORS.items() if info.kind == "gpu"}
    assert set(gpus) == set(GKE_GPUS)
    for name, info in gpus.items():
        assert {machine: count for count, machine in info.machines}.items() <= GKE_GPUS[name].items(), name


def test_every_catalogued_gpu_machine_is_a_gke_machine_with_its_gpu_count():
    catalog = yaml.safe_load(CATALOG.read_text())["accelerators"]
    gpus = {name: entry for name, entry in catalog.items() if name != "cpu"}
    assert set(gpus) <= set(GKE_GPUS)
    for name, entry in gpus.items():
        machines = {m["machine_type"]: m["gpus"] for m in entry["machines"]}
        assert machines.items() <= GKE_GPUS[name].items(), name
