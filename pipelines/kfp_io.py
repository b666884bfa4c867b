"""Parameter plumbing shared by the KFP wrappers."""

from __future__ import annotations

import json
from typing import Any


def json_param(value: str | dict[str, Any]) -> dict[str, Any]:
    """A JSON string parameter as a dict.

    KFP's local runner hands a string parameter that holds JSON to tasks inside a ParallelFor
    already parsed, while a cluster passes it verbatim; accept both.
    """
    return json.loads(value) if isinstance(value, str) else value
