"""Install what you use: the core imports no extra, and a command whose extra is missing says which to install."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
from typer.testing import CliRunner

from servesweep.cli import app
from servesweep.extras import EXTRAS, MissingExtra, require, require_installed
from tests.support.paths import REPO

ROOT = REPO
# Imported by no core module at import time: each belongs to an extra.
HEAVY = ("kfp", "hera", "kubernetes", "google.cloud.container", "google.cloud.storage", "matplotlib", "torch",
         "transformers", "vllm", "huggingface_hub", "safetensors")
CORE = ("servesweep.cli", "servesweep.spec", "servesweep.lake.query", "servesweep.lake.store",
        "servesweep.analysis.views", "servesweep.loadgen.runner", "servesweep.planner", "servesweep.platform",
        "servesweep.platform.local", "servesweep.sweep_plan", "servesweep.docs", "components.sweep",
        "components.collect_metrics")


def test_the_core_imports_no_extra():
    code = (f"import importlib, json, sys\nfor m in {list(CORE)!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m in {list(HEAVY)!r})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(loaded.stdout) == []


def test_every_extra_the_code_names_is_declared():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(declared) and "dev" in declared


def test_require_names_the_extra_to_install(monkeypatch):
    assert require("json", extra="kfp") is json
    monkeypatch.setitem(sys.modules, "kfp", None)  # as if it were not installed
    with pytest.raises(MissingExtra, match=r"needs the \[kfp\] extra \(kfp is not installed\): "
                                           r"pip install 'servesweep\[kfp\]'"):
        require("kfp", extra="kfp")
    with pytest.raises(MissingExtra, match=r"servesweep compile needs the \[kfp\] extra"):
        require_installed("kfp.kubernetes", extra="kfp", purpose="servesweep compile")
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        require("json", extra="gpu")


@pytest.mark.parametrize(("module", "extra", "args"), [
    ("kfp", "kfp", ["compile", "--out", "{tmp}"]),
    ("hera", "argo", ["compile", "--out", "{tmp}"]),
    ("kubernetes", "gke", ["submit", "--kfp", "http://kfp.invalid"]),
    ("matplotlib", "report", ["report", "some-run", "--lake", "{tmp}"]),
    ("kfp", "kfp", ["run", "specs/local.yaml"]),
])
def test_a_command_without_its_extra_fails_in_one_line_naming_it(monkeypatch, tmp_path, module, extra, args):
    monkeypatch.setitem(sys.modules, module, None)
    result = CliRunner().invoke(app, [arg.format(tmp=tmp_path) for arg in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'servesweep[{extra}]'" in lines[0], result.output
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
