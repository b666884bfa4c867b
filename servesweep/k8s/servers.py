"""How to start each model server: image, command line, ports, health and metrics paths.

One entry per server kind in `SERVERS`. Rendering turns (model, knobs) into containers and refuses,
with a ValueError naming both, any combination the server cannot run.

Quantization means the weight format the server runs. Some servers quantize a bf16 checkpoint when
it loads ("online"); others need a checkpoint already quantized in that format ("checkpoint"), and
the flag, where one is passed, makes the server fail loudly on a checkpoint of another format
instead of silently serving bf16.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import yaml

from servesweep.k8s.accelerators import AcceleratorKind
from servesweep.quantization import CHECKPOINT_SCHEMES

ApiKind = Literal["openai", "triton-generate", "jetstream-http"]
QuantSource = Literal["none", "online", "checkpoint"]
TokenDelivery = Literal["env", "file"]

HF_TOKEN_ENV = "HF_TOKEN"
HF_TOKEN_DIR = "/huggingface"  # where file-based servers read HUGGINGFACE_TOKEN
HF_TOKEN_FILE = "HUGGINGFACE_TOKEN"


@dataclass(frozen=True)
class ModelRef:
    """The model as the server sees it from inside its container."""

    location: str  # hub repo id, or a path under the model mount
    served_name: str
    revision: str | None = None
    from_hub: bool = True


@dataclass(frozen=True)
class ServerOptions:
    """The knobs swept or fixed per deployment."""

    quantization: str = "none"
    tensor_parallel: int = 1
    max_batch: int | None = None  # None: the server's own default cap
    gpu_memory_fraction: float = 0.9
    max_model_len: int = 1024

    def __post_init__(self) -> None:
        if self.tensor_parallel < 1:
            raise ValueError(f"tensor_parallel must be >= 1, got {self.tensor_parallel}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 0 < self.gpu_memory_fraction <= 1:
            raise ValueError(f"gpu_memory_fraction must be in (0, 1], got {self.gpu_memory_fraction}")
        if self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    ports: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedServer:
    """Everything the manifests and the benchmark client need to know about one server."""

    kind: str
    main: ContainerPlan  # the container that gets the accelerators
    sidecars: tuple[ContainerPlan, ...]
    port: int
    readiness_path: str
    metrics_port: int | None
    metrics_path: str | None
    metric_prefix: str | None
    api: ApiKind
    served_name: str
    accelerator_kind: AcceleratorKind
    quantization_source: QuantSource
    token_delivery: TokenDelivery
    ignored: tuple[str, ...]  # knobs this server has no flag for; recorded, never silently dropped


@dataclass(frozen=True)
class QuantSupport:
    args: tuple[str, ...]
    source: QuantSource


@dataclass(frozen=True)
class _Launch:
    command: tuple[str, ...]
    args: tuple[str, ...]
    ignored: tuple[str, ...] = ()
    sidecars: tuple[ContainerPlan, ...] = ()
    served_name: str | None = None
    main_ports: dict[str, int] | None = None  # None: the kind's http (and metrics) port


@dataclass(frozen=True)
class ServerKindInfo:
    kind: str
    default_image: str | None
    port: int
    readiness_path: str
    metrics_port: int | None
    metrics_path: str | None
    metric_prefix: str | None
    api: ApiKind
    accelerator_kind: AcceleratorKind
    quantizations: dict[str, QuantSupport]
    launch: Callable[[ModelRef, ServerOptions, QuantSupport, dict[str, str]], _Launch]
    token_delivery: TokenDelivery = "env"
    max_tensor_parallel: int | None = None
    caps_batch: bool = True
    loads_local_paths: bool = True
    honours_revision: bool = True

    def render(self, model: ModelRef, options: ServerOptions, images: dict[str, str] | None = None) -> RenderedServer:
        images = images or {}
        quant = self._quant_support(options.quantization)
        self._check(model, options)
        image = images.get(self.kind) or self.default_image
        if not image:
            raise ValueError(f"{self.kind} has no default image; set gke.images[{self.kind!r}]")
        launch = self.launch(model, options, quant, images)
        return RenderedServer(
            kind=self.kind,
            main=ContainerPlan("server", image, launch.command, launch.args, launch.main_ports or self._ports()),
            sidecars=launch.sidecars,
            port=self.port,
            readiness_path=self.readiness_path,
            metrics_port=self.metrics_port,
            metrics_path=self.metrics_path,
            metric_prefix=self.metric_prefix,
            api=self.api,
            served_name=launch.served_name or model.served_name,
            accelerator_kind=self.accelerator_kind,
            quantization_source=quant.source,
            token_delivery=self.token_delivery,
            ignored=launch.ignored,
        )

    def _quant_support(self, quantization: str) -> QuantSupport:
        try:
            return self.quantizations[quantization]
        except KeyError:
            supported = ", ".join(self.quantizations)
            raise ValueError(
                f"server {self.kind!r} cannot serve quantization {quantization!r}; supported: {supported}"
            ) from None

    def _check(self, model: ModelRef, options: ServerOptions) -> None:
        if self.max_tensor_parallel and options.tensor_parallel > self.max_tensor_parallel:
            raise ValueError(f"server {self.kind!r} has no tensor parallelism: tensor_parallel must be 1, "
                             f"got {options.tensor_parallel}")
        if options.max_batch is not None and not self.caps_batch:
            raise ValueError(f"server {self.kind!r} has no flag capping requests per batch; "
                             "sweep it with client concurrency (max_batch=None)")
        if not model.from_hub and not self.loads_local_paths:
            raise ValueError(f"server {self.kind!r} loads models from the Hugging Face hub only, not from GCS")
        if model.revision and not self.honours_revision:
            raise ValueError(f"server {self.kind!r} cannot pin a model revision ({model.revision!r})")

    def _ports(self) -> dict[str, int]:
        ports = {"http": self.port}
        if self.metrics_port and self.metrics_port != self.port:
            ports["metrics"] = self.metrics_port
        return ports


def _flag(name: str, value: object) -> tuple[str, str]:
    return name, str(value)


def _vllm(model: ModelRef, opt: ServerOptions, quant: QuantSupport, images: dict[str, str]) -> _Launch:
    args = [
        model.location,
        *_flag("--served-model-name", model.served_name),
        *_flag("--host", "0.0.0.0"),
        *_flag("--port", 8000),
        # vLLM's distributed serving docs: "pass in the --tensor-parallel-size argument" (GPUs on one node).
        *_flag("--tensor-parallel-size", opt.tensor_parallel),
        *_flag("--gpu-memory-utilization", opt.gpu_memory_fraction),
        *_flag("--max-model-len", opt.max_model_len),
    ]
    if opt.max_batch is not None:
        args += _flag("--max-num-seqs", opt.max_batch)
    if model.revision:
        args += _flag("--revision", model.revision)
    return _Launch(("vllm", "serve"), (*args, *quant.args))


_TGI_DEFAULT_PREFILL_TOKENS = 4096


def _tgi(model: ModelRef, opt: ServerOptions, quant: QuantSupport, images: dict[str, str]) -> _Launch:
    max_input = opt.max_model_len - 1  # TGI wants room for at least one new token
    args = [
        *_flag("--model-id", model.location),
        *_flag("--hostname", "0.0.0.0"),
        *_flag("--port", 8080),
        # text-generation-launcher --num-shard: "The number of shards to use if you don't want to use all GPUs"
        # (TGI's launcher reference); the pod sees only its GPUs, so it would shard over all of them anyway.
        *_flag("--num-shard", opt.tensor_parallel),
        *_flag("--cuda-memory-fraction", opt.gpu_memory_fraction),
        *_flag("--max-total-tokens", opt.max_model_len),
        *_flag("--max-input-tokens", max_input),
    ]
    if max_input > _TGI_DEFAULT_PREFILL_TOKENS:  # TGI refuses a prefill budget below max input tokens
        args += _flag("--max-batch-prefill-tokens", max_input)
    if opt.max_batch is not None:
        args += _flag("--max-batch-size", opt.max_batch)
    if model.revision:
        args += _flag("--revision", model.revision)
    # No command: the image's entrypoint prepares the environment, then runs the launcher with these args.
    return _Launch((), (*args, *quant.args))


def _sglang(model: ModelRef, opt: ServerOptions, quant: QuantSupport, images: dict[str, str]) -> _Launch:
    args = [
        *_flag("--model-path", model.location),
        *_flag("--served-model-name", model.served_name),
        *_flag("--host", "0.0.0.0"),
        *_flag("--port", 30000),
        # SGLang's server arguments list --tp-size and --tensor-parallel-size as one option (the docs' `--tp 2`
        # is accepted too): docs.sglang.io cookbook/base/reference/server_arguments.
        *_flag("--tp-size", opt.tensor_parallel),
        *_flag("--mem-fraction-static", opt.gpu_memory_fraction),
        *_flag("--context-length", opt.max_model_len),
        "--enable-metrics",
    ]
    if opt.max_batch is not None:
        args += _flag("--max-running-requests", opt.max_batch)
    if model.revision:
        args += _flag("--revision", model.revision)
    # Whole command line as args: NVIDIA-based images keep their entrypoint, which execs its arguments.
    return _Launch((), ("python3", "-m", "sglang.launch_server", *args, *quant.args))


# Triton serves TensorRT-LLM through the LLM API model the -trtllm-python-py3 images ship (PyTorch
# backend: no engine build step; NVIDIA deprecated the engine-build workflow). Its model.yaml holds
# the LLM() arguments; `triton_config` must stay: max_batch_size 0 (the engine batches in flight
# itself) and decoupled so /generate_stream streams tokens.
TRITON_MODEL_NAME = "tensorrt_llm"
# Checked: the -trtllm-python-py3 images ship the template at /app/all_models/llmapi/ (Triton's LLM API guides:
# `cp -R /app/all_models/llmapi/ llmapi_repo/`, then edit llmapi_repo/tensorrt_llm/1/model.yaml); in the
# TensorRT-LLM repo it is tensorrt_llm/triton_backend/all_models/llmapi (tensorrtllm_backend docs/llmapi.md).
_TRITON_TEMPLATE = "/app/all_models/llmapi"
_TRITON_REPO = "/tmp/triton-repo"


def triton_model_yaml(model: ModelRef, opt: ServerOptions) -> dict[str, object]:
    config: dict[str, object] = {
        "model": model.location,
        "backend": "pytorch",
        # The LLM API's own keys (TensorRT-LLM triton_backend/all_models/llmapi/tensorrt_llm/1/model.yaml). The
        # llmapi docs start one tritonserver (launch_triton_server.py's default --world_size 1) and set the
        # parallel sizes here; model.py's LLM() then starts the tensor-parallel workers itself.
        "tensor_parallel_size": opt.tensor_parallel,
        "pipeline_parallel_size": 1,
        "max_seq_len": opt.max_model_len,
        "kv_cache_config": {"free_gpu_memory_fraction": opt.gpu_memory_fraction},
        "triton_config": {"max_batch_size": 0, "decoupled": True},
    }
    if opt.max_batch is not None:
        config["max_batch_size"] = opt.max_batch
    if model.revision:
        config["revision"] = model.revision
    return config


def _triton(model: ModelRef, opt: ServerOptions, quant: QuantSupport, images: dict[str, str]) -> _Launch:
    model_yaml = yaml.safe_dump(triton_model_yaml(model, opt), sort_keys=False)
    script = "\n".join([
        "set -euo pipefail",
        f"mkdir -p {_TRITON_REPO}",
        f"cp -R {_TRITON_TEMPLATE}/. {_TRITON_REPO}/",
        f"cat > {_TRITON_REPO}/{TRITON_MODEL_NAME}/1/model.yaml <<'SERVESWEEP_YAML'",
        model_yaml.rstrip("\n"),
        "SERVESWEEP_YAML",
        f"exec tritonserver --model-repository={_TRITON_REPO} --http-port=8000 --grpc-port=8001 --metrics-port=8002",
    ])
    return _Launch((), ("bash", "-c", script), served_name=TRITON_MODEL_NAME)


JETSTREAM_DEFAULT_BATCH = 32
_TPU_IMAGES = "us-docker.pkg.dev/cloud-tpu-images/inference"
_JETSTREAM_HTTP_IMAGE = f"{_TPU_IMAGES}/jetstream-http:v0.2.3"


def _jetstream(model: ModelRef, opt: ServerOptions, quant: QuantSupport, images: dict[str, str]) -> _Launch:
    # The image's entrypoint logs in with /huggingface/HUGGINGFACE_TOKEN and runs `jpt serve`, which
    # shards over every TPU chip of the slice: tensor parallelism is the chip count, not a flag
    # (jetstream-pytorch jetstream_pt/cli.py: interleaved_slices=(f"tpu={len(jax.devices())}",)).
    args = (
        f"--model_id={model.location}",
        f"--override_batch_size={opt.max_batch or JETSTREAM_DEFAULT_BATCH}",
        "--enable_model_warmup=True",
        "--prometheus_port=9090",
        *quant.args,
    )
    http = ContainerPlan(
        "jetstream-http", images.get("jetstream-http", _JETSTREAM_HTTP_IMAGE), (), (), {"http": 8000}
    )
    return _Launch((), args, ignored=("gpu_memory_fraction", "max_model_len"), sidecars=(http,),
                   main_ports={"grpc": 9000, "metrics": 9090})


def _transformers(model: ModelRef, opt: ServerOptions, quant: QuantSupport, images: dict[str, str]) -> _Launch:
    location = f"{model.location}@{model.revision}" if model.revision else model.location
    args = (
        location,
        "--continuous-batching",
        *_flag("--host", "0.0.0.0"),
        *_flag("--port", 8000),
        # Share of the memory left after the weights load that goes to the KV cache.
        *_flag("--cb-max-memory-percent", opt.gpu_memory_fraction),
        *quant.args,
    )
    return _Launch(("transformers", "serve"), args, ignored=("max_model_len",))


_NONE = QuantSupport((), "none")


def _online(*args: str) -> QuantSupport:
    return QuantSupport(args, "online")


def _checkpoint(*args: str) -> QuantSupport:
    return QuantSupport(args, "checkpoint")


SERVERS: dict[str, ServerKindInfo] = {
    info.kind: info
    for info in (
        ServerKindInfo(
            kind="vllm", default_image="vllm/vllm-openai:v0.32.0", port=8000, readiness_path="/health",
            metrics_port=8000, metrics_path="/metrics", metric_prefix="vllm:", api="openai",
            accelerator_kind="gpu", launch=_vllm,
            quantizations={
                "none": _NONE,
                "fp8": _online("--quantization", "fp8"),
                "int8": _checkpoint("--quantization", "compressed-tensors"),  # W8A8 from llm-compressor
                "awq": _checkpoint("--quantization", "awq_marlin"),  # plain "awq" forces the slow kernel
                "gptq": _checkpoint("--quantization", "gptq_marlin"),
                # llm-compressor's compressed-tensors checkpoints: vLLM reads the scheme from their config.json
                **{method: _checkpoint() for method in CHECKPOINT_SCHEMES},
            },
        ),
        ServerKindInfo(
            kind="tgi", default_image="ghcr.io/huggingface/text-generation-inference:3.3.6", port=8080,
            readiness_path="/health", metrics_port=8080, metrics_path="/metrics", metric_prefix="tgi_",
            api="openai", accelerator_kind="gpu", launch=_tgi,
            quantizations={
                "none": _NONE,
                "fp8": _online("--quantize", "fp8"),
                "int8": _online("--quantize", "eetq"),  # 8-bit weights, no calibrated checkpoint needed
                "awq": _checkpoint("--quantize", "awq"),
                "gptq": _checkpoint("--quantize", "gptq"),
            },
        ),
        ServerKindInfo(
            kind="triton-trtllm", default_image="nvcr.io/nvidia/tritonserver:26.09-trtllm-python-py3",
            port=8000, readiness_path="/v2/health/ready", metrics_port=8002, metrics_path="/metrics",
            metric_prefix="nv_", api="triton-generate", accelerator_kind="gpu", launch=_triton,
            # The PyTorch backend reads ModelOpt checkpoints' quantization config itself; it does not
            # quantize on load.
            quantizations={"none": _NONE, "fp8": _checkpoint(), "awq": _checkpoint()},
        ),
        ServerKindInfo(
            kind="jetstream", default_image=f"{_TPU_IMAGES}/jetstream-pytorch-server:v0.2.4",
            port=8000, readiness_path="/healthcheck", metrics_port=9090, metrics_path="/metrics",
            metric_prefix="jetstream_", api="jetstream-http", accelerator_kind="tpu", launch=_jetstream,
            token_delivery="file", loads_local_paths=False, honours_revision=False,
            quantizations={
                "none": _NONE,
                "int8": _online("--quantize_weights=True", "--quantize_type=int8_per_channel"),
            },
        ),
        ServerKindInfo(
            kind="sglang", default_image="lmsysorg/sglang:v0.5.23-cu129", port=30000, readiness_path="/health",
            metrics_port=30000, metrics_path="/metrics", metric_prefix="sglang:", api="openai",
            accelerator_kind="gpu", launch=_sglang,
            quantizations={
                "none": _NONE,
                "fp8": _online("--quantization", "fp8"),
                "int8": _checkpoint("--quantization", "w8a8_int8"),
                # SGLang's docs: read AWQ/GPTQ from the checkpoint's config, pass no flag.
                "awq": _checkpoint(),
                "gptq": _checkpoint(),
            },
        ),
        ServerKindInfo(
            # No official image ships `transformers serve` with its serving extras: name one in gke.images.
            kind="transformers", default_image=None, port=8000, readiness_path="/health",
            metrics_port=None, metrics_path=None, metric_prefix=None, api="openai", accelerator_kind="gpu",
            launch=_transformers, max_tensor_parallel=1, caps_batch=False,
            quantizations={"none": _NONE, "int8": _online("--quantization", "bnb-8bit")},
        ),
    )
}


def server_info(kind: str) -> ServerKindInfo:
    try:
        return SERVERS[kind]
    except KeyError:
        raise ValueError(f"unknown server kind {kind!r}; known: {', '.join(SERVERS)}") from None


def render_server(
    kind: str, model: ModelRef, options: ServerOptions, images: dict[str, str] | None = None
) -> RenderedServer:
    return server_info(kind).render(model, options, images)
