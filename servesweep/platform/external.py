"""The external platform: a server that already runs (`server.kind: external`), benchmarked as it is.

Nothing is provisioned, deployed or stopped. The load-model step writes only what the sweep needs to build
prompts (the spec's model config and tokenizer, or the endpoint's own tokenizer from
`server.external.tokenizer_dir`); the deploy step checks that the endpoint answers (`GET /v1/models`, with
the auth header when one is configured) and hands the sweep its URLs. The auth token is read from the
environment of the step that sends requests (`server.external.auth_env`; on a cluster filled from
`auth_secret`) and never enters an Endpoint, a parameter or the lake.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

from servesweep.platform.checkpoint import load_model
from servesweep.platform.types import Capacity, Endpoint, EndpointAuthError, ModelInfo, PlatformName, ServerRequest
from servesweep.spec import BenchmarkSpec, ExternalEndpoint

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class ExternalPlatform:
    """An endpoint servesweep does not own: provision, deploy and teardown touch nothing."""

    name: ClassVar[PlatformName] = "external"

    def provision(self, spec: BenchmarkSpec, owner: str) -> Capacity:
        return Capacity(platform="external")

    def fetch_checkpoint(self, spec: BenchmarkSpec, out_dir: Path) -> ModelInfo:
        """The spec's model config and a tokenizer: the endpoint's own when `tokenizer_dir` names one."""
        external = _external(spec)
        info = load_model(spec.model.model_copy(update={"weights": "dummy"}), out_dir)  # no weights: none served
        if external.tokenizer_dir:
            source = Path(external.tokenizer_dir)
            if not (source / "tokenizer.json").is_file():
                raise FileNotFoundError(f"server.external.tokenizer_dir: no tokenizer.json in {source}")
            for name in TOKENIZER_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, Path(out_dir) / name)
        return info.model_copy(update={"served_name": external.served_model_name})

    def deploy_server(self, spec: BenchmarkSpec, request: ServerRequest) -> Endpoint:
        external = _external(spec)
        endpoint = Endpoint(
            deployment_id=request.deployment_id, max_num_seqs=request.max_num_seqs,
            base_url=external.base_url.rstrip("/"), metrics_url=external.metrics_url or "",
            served_name=external.served_model_name, metric_prefix=external.metric_prefix, platform="external",
            auth_env=external.token_env, auth_header=external.auth_header, auth_scheme=external.auth_scheme,
        )
        error = check_endpoint(endpoint, timeout_s=min(spec.server.startup_timeout_s, 60.0))
        return endpoint.model_copy(update={"error": error, "start_seconds": None})

    def teardown_server(self, endpoint: Endpoint, owner: str) -> None:
        return None  # not ours to stop

    def teardown_job(self, owner: str) -> list[str]:
        return []

    def log_dir(self, owner: str) -> Path | None:
        return None


def _external(spec: BenchmarkSpec) -> ExternalEndpoint:
    if spec.server.external is None:  # the spec's validator makes kind external carry the section
        raise ValueError("server.kind external needs server.external")
    return spec.server.external


def check_endpoint(endpoint: Endpoint, timeout_s: float = 30.0) -> str | None:
    """None when `GET {base_url}/v1/models` answers and lists the served model, else why not (one line)."""
    try:
        headers = endpoint.request_headers()
    except EndpointAuthError as error:
        return str(error)
    request = urllib.request.Request(endpoint.base_url + "/v1/models", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            listed = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return f"external endpoint {endpoint.base_url}: GET /v1/models answered HTTP {error.code}"
    except (OSError, ValueError) as error:
        return f"external endpoint {endpoint.base_url} does not answer: {error}"[:500]
    names = [m.get("id") for m in listed.get("data", []) if isinstance(m, dict)] if isinstance(listed, dict) else []
    if names and endpoint.served_name not in names:
        return (f"external endpoint {endpoint.base_url} does not serve {endpoint.served_name!r} "
                f"(it serves {', '.join(map(str, names))[:300]})")
    return None
