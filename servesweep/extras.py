"""Optional dependencies: the core install (spec, load generator, lake, query) needs none of them.

`require` is called where a command or platform first needs an extra, so a missing one is a single line
naming what to install rather than an ImportError from deep inside a step.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

# The extras of pyproject.toml and what each is for (the text of MissingExtra).
EXTRAS = {
    "local": "the local platform: vLLM's CPU build and the random-weight checkpoint generator",
    "kfp": "the Kubeflow Pipelines DAG: servesweep run, compile and submit --kfp",
    "argo": "the Argo Workflow: servesweep compile and submit --argo",
    "gke": "the GKE platform: node pools, server Deployments, GCS and hub checkpoints",
    "report": "servesweep report's charts",
    "sketch": "pooled percentiles from the lake's per-point sketches (servesweep pooled): the DDSketch library",
    "accuracy": "the accuracy step's exact match: lm-evaluation-harness",
}


class MissingExtra(ImportError):
    """A feature needs an optional dependency that is not installed; the message says which extra has it."""


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import `module`, or raise MissingExtra naming the extra to install."""
    _check_extra(extra)
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise _missing(module, extra, purpose) from error


def require_installed(module: str, extra: str, purpose: str = "") -> None:
    """Like `require` without importing: for modules that take seconds to import (vllm, transformers) and are
    used by a subprocess anyway."""
    _check_extra(extra)
    if not _installed(module):
        raise _missing(module, extra, purpose)


def _installed(module: str) -> bool:
    """Whether `module` and each package above it can be imported (one set to None in sys.modules cannot)."""
    parts = module.split(".")
    for name in (".".join(parts[:end]) for end in range(1, len(parts) + 1)):
        if name in sys.modules:
            if sys.modules[name] is None:
                return False
            continue
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # a broken parent package
            return False
    return True


def _check_extra(extra: str) -> None:
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; extras: {', '.join(EXTRAS)}")


def _missing(module: str, extra: str, purpose: str) -> MissingExtra:
    needs = purpose or EXTRAS[extra]
    return MissingExtra(f"{needs} needs the [{extra}] extra ({module} is not installed): "
                        f"pip install 'servesweep[{extra}]'")
