"""Deploy-server and teardown-server steps: one server of the sweep, on the platform the spec names.

The server outlives the deploy step on purpose (the sweep step talks to it); teardown-server, or the
pipeline's exit handler (teardown_all), stops it.
"""

from __future__ import annotations

from pathlib import Path

from servesweep.platform import Platform, platform_for, platform_of
from servesweep.platform.types import Endpoint, ServerRequest
from servesweep.secrets import mask, secret_values
from servesweep.spec import BenchmarkSpec, SweepMode


def deploy_server(
    spec: BenchmarkSpec, model_path: str, deployment_id: str, max_num_seqs: int, owner: str,
    log_dir: str | Path | None = None, *, sweep_mode: SweepMode = "client_concurrency",
    node_selector: dict[str, str] | None = None, platform: Platform | None = None,
) -> Endpoint:
    """Start the server and wait until it answers; a failure is returned in `Endpoint.error`.

    `node_selector` places it (from the provision step's Capacity); `log_dir` overrides where the platform
    writes its log.
    """
    platform = platform or platform_for(spec)
    where = log_dir if log_dir is not None else platform.log_dir(owner)
    request = ServerRequest(model_path=model_path, deployment_id=deployment_id, max_num_seqs=max_num_seqs,
                            owner=owner, sweep_mode=sweep_mode, node_selector=dict(node_selector or {}),
                            log_dir=str(where) if where is not None else None)
    endpoint = platform.deploy_server(spec, request)
    # An error may quote the server's log or its settings: server.env values never leave the server.
    error = endpoint.error and mask(endpoint.error, secret_values(spec.server.env))
    return endpoint.model_copy(update={"error": error})


def teardown_server(endpoint: Endpoint, owner: str, platform: Platform | None = None) -> None:
    """Stop the server (on the platform that deployed it); idempotent."""
    (platform or platform_of(endpoint)).teardown_server(endpoint, owner)
