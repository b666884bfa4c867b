"""Read a YAML file into a mapping, every failure as one clear error of the caller's type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_mapping(path: str | Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The file's top-level mapping (empty file: {}); `what` names the file in messages ("spec")."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as problem:
        raise error(f"cannot read {what} {path}: {problem.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as problem:
        raise error(f"{what} {path} is not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"invalid {what} ({path}): expected a mapping, got {type(data).__name__}")
    return data
