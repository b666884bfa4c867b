"""Keep `server.env` values out of everything servesweep writes except the server's own environment.

Pipeline parameters (compiled YAML defaults, KFP's run folder and log, `spec_json` between steps)
carry WITHHELD in place of each value. A local run hands the real values to its steps through the
SERVER_ENV_VAR environment variable, which the KFP local runner's task processes inherit and which
only the deploy step reads (`resolve_env`). Messages that may quote a value (a server's log tail, a
failure reason, a pipeline error) go through `mask`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping

WITHHELD = "<withheld>"
SERVER_ENV_VAR = "SERVESWEEP_SERVER_ENV"
MASK = "***"
# Shorter values ("0", "true", "4096") are settings, not credentials; masking them would garble messages.
MIN_MASKED_LENGTH = 6
HF_TOKEN_PATTERN = r"\bhf_[A-Za-z0-9]{20,}"  # hub tokens, whether servesweep knows them or not
_HF_TOKEN = re.compile(HF_TOKEN_PATTERN)


class SecretMissing(ValueError):
    """A withheld value that nobody handed over (e.g. a compiled pipeline run from the KFP UI)."""


def withhold(env: Mapping[str, str]) -> dict[str, str]:
    return dict.fromkeys(env, WITHHELD)


def handed_env() -> dict[str, str]:
    """The values `hand_over` passed to this process (empty when none were)."""
    try:
        data = json.loads(os.environ.get(SERVER_ENV_VAR) or "{}")
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


@contextlib.contextmanager
def hand_over(env: Mapping[str, str]) -> Iterator[None]:
    """While inside, child processes (the pipeline's task processes) can read `env` through `resolve_env`."""
    previous = os.environ.get(SERVER_ENV_VAR)
    if env:
        os.environ[SERVER_ENV_VAR] = json.dumps(dict(env))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SERVER_ENV_VAR, None)
        else:
            os.environ[SERVER_ENV_VAR] = previous


def resolve_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with every WITHHELD value replaced by the handed-over one; SecretMissing names any left."""
    handed = handed_env()
    resolved = {name: handed.get(name, value) if value == WITHHELD else value for name, value in env.items()}
    missing = sorted(name for name, value in resolved.items() if value == WITHHELD)
    if missing:
        raise SecretMissing(
            f"server.env {', '.join(missing)}: the value was withheld from the pipeline parameters and not handed "
            "to this step (run it with `servesweep run` or `servesweep submit`; put tokens in server.secret_env "
            "on GKE)")
    return resolved


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Every value to mask for a spec's `server.env`: its own values and those handed over."""
    values = [v for v in env.values() if v != WITHHELD] + [handed_env().get(name, "") for name in env]
    return sorted({v for v in values if len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True)


def mask(text: str, values: Iterable[str]) -> str:
    """`text` with each value (longest first, so a value inside another goes too) and any hub token as MASK."""
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= MIN_MASKED_LENGTH:
            text = text.replace(value, MASK)
    return _HF_TOKEN.sub(MASK, text)
