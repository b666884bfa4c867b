"""The benchmark spec: one pydantic model, loadable from YAML or from pipeline parameters.

Everything a run needs is here; steps receive the spec as JSON and never read files of their own.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from servesweep.gke_spec import GKESpec
from servesweep.quantization import Quantization, is_checkpoint_method
from servesweep.secrets import withhold
from servesweep.yamlfile import parse_mapping, read_mapping

# vllm runs locally (vLLM's CPU build) and on GKE; the others only on GKE (servesweep.k8s.servers).
# external: a server that already runs (server.external), benchmarked as it is: nothing deployed or stopped.
ServerKind = Literal["vllm", "transformers", "tgi", "triton-trtllm", "jetstream", "sglang", "external"]
Accelerator = Literal[
    "cpu",
    "nvidia-l4",
    "nvidia-tesla-a100",
    "nvidia-a100-80gb",
    "nvidia-h100-80gb",
    "nvidia-h200-141gb",
    "nvidia-b200",
]
Dtype = Literal["float32", "bfloat16", "float16"]
SweepMode = Literal["client_concurrency", "server_max_seqs"]
LoadKind = Literal["closed", "open"]
SweepStrategy = Literal["grid", "adaptive"]
WeightsKind = Literal["random", "dummy", "trained"]

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
RUN_ID_RULE = "a run id is 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit"

# Documented maxima: far above any real run, low enough that a typo (1e8 for 1e3) fails validation
# instead of hours later in the load generator or the server.
MAX_BATCH = 8192  # concurrent requests of one point
MAX_TOKENS = 1 << 20  # prompt, output and context lengths
MAX_REQUESTS = 1_000_000  # requests of one point
MAX_SEED = 2**32 - 1  # numpy and vLLM seeds are 32-bit
MAX_SECONDS = 86_400.0  # timeouts and durations: one day
MAX_SLO_MS = 86_400_000.0

_GS_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
EnvName = Annotated[str, StringConstraints(pattern=_ENV_NAME)]
_K8S_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_SECRET_KEY = r"^[-._A-Za-z0-9]{1,253}$"
_HTTP_URL = r"^https?://[A-Za-z0-9._\[\]:-]+(:[0-9]{1,5})?(/[^\s]*)?$"
_HEADER_NAME = r"^[A-Za-z0-9-]{1,64}$"
ENDPOINT_TOKEN_ENV = "SERVESWEEP_ENDPOINT_TOKEN"  # the variable a Secret-held endpoint token arrives in


def run_id_for(name: str, job_id: str = "") -> str:
    """`{name}-{first 8 of the job id}`, or `{name}-{UTC time}` without a (substituted) job id."""
    # Stripped of leading '.', '_' and '-' so the derived id passes the run id rule like a given one.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._")[:60].rstrip("-._") or "run"
    job = re.sub(r"[^A-Za-z0-9]+", "", job_id)[:8] if "{{" not in job_id else ""
    return f"{slug}-{job or datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def variant_run_id(run_id: str, variant: str) -> str:
    """`<run_id>-<variant>`, cut so the whole fits the 80 characters of a run id: a derived base (name and start
    time) can be 77, and loses its first characters, never the time that makes it unique (a given run id is
    checked to fit whole)."""
    suffix = f"-{variant}"
    return run_id[-(80 - len(suffix)):].lstrip("-._") + suffix


def valid_run_id(value: str) -> bool:
    """Whether `value` is a usable run id: one path component, no '..', no quotes (it lands in paths and SQL)."""
    return bool(_RUN_ID.match(value))


class SpecError(ValueError):
    """A spec that cannot be used; the message names the offending field(s)."""


class _Strict(BaseModel):
    # NaN and infinity pass every `gt`/`le` bound pydantic checks, so neither is a valid number here.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelShape(_Strict):
    """Architecture of a Llama-family checkpoint generated with random weights."""

    hidden_size: int = Field(128, gt=0, le=65_536, description="Model width, 1..65536.")
    intermediate_size: int = Field(256, gt=0, le=262_144, description="MLP width, 1..262144.")
    num_hidden_layers: int = Field(2, gt=0, le=1024, description="Decoder layers, 1..1024.")
    num_attention_heads: int = Field(2, gt=0, le=1024, description="Attention heads, 1..1024.")
    num_key_value_heads: int = Field(1, gt=0, le=1024, description="KV heads (GQA), 1..1024.")
    vocab_size: int = Field(2048, ge=300, le=MAX_TOKENS, description="Tokens in the vocabulary, 300..2^20.")
    max_position_embeddings: int = Field(2048, gt=0, le=MAX_TOKENS, description="Context the model supports, "
                                         "tokens, 1..2^20.")
    tie_word_embeddings: bool = Field(False, description="Whether the output projection shares the input embedding "
                                      "matrix (true for Llama 3.2 1B).")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelShape:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        return self


# Real architectures with random weights: same compute and memory traffic as the real model.
MODEL_PRESETS: dict[str, ModelShape] = {
    "tiny": ModelShape(),
    # The trained model's shape (model.weights 'trained'): small enough to learn addition in minutes on 2 cores.
    "tiny-trained": ModelShape(vocab_size=300, num_attention_heads=4, num_key_value_heads=2,
                               max_position_embeddings=512),
    "llama-1b": ModelShape(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, tie_word_embeddings=True,
    ),
    "llama3-8b": ModelShape(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
    ),
    # Meta-Llama-3-70B's config.json (70.55e9 parameters; 141 GB in bf16: two H200s or four H100s).
    "llama3-70b": ModelShape(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
    ),
}


class TrainingSpec(_Strict):
    """How the load-model step trains the model when `model.weights` is 'trained' (servesweep.synthetic_task)."""

    task: Literal["addition"] = Field("addition", description="The synthetic task: 'addition', a + b = sum with "
                                      "one token per digit and the sum least significant digit first.")
    digits: int = Field(2, ge=1, le=8, description="Digits of each operand, 1..8.")
    steps: int = Field(2000, ge=1, le=100_000, description="Optimizer steps, 1..100000.")
    batch_size: int = Field(32, ge=1, le=4096, description="Examples per step, 1..4096.")
    learning_rate: float = Field(1e-3, gt=0, le=1, description="AdamW peak learning rate (linear warm-up over "
                                 "5 % of the steps, then linear decay), (0, 1].")


class ModelSpec(_Strict):
    """The model every server of the run loads: a generated checkpoint of a real architecture (random weights,
    weights the server draws, or weights trained here on a synthetic task)."""

    name: str = Field("tiny-llama", min_length=1, max_length=256,
                      description="Name the server serves the model under (1-256 characters).")
    source: Literal["random"] = Field(
        "random", description="'random': a random-weight Llama of `preset`/`shape`, made locally."
    )
    preset: str = Field("tiny", description="Architecture of the generated checkpoint, one of: "
                        f"{', '.join(MODEL_PRESETS)}.")
    shape: ModelShape | None = Field(None, description="Overrides the preset's shape when given.")
    dtype: Dtype = Field("bfloat16", description="Weights and activations dtype the server runs the model in.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of weights, prompts and sampling, 0..2^32-1.")
    weights: WeightsKind = Field(
        "random", description="'random': the load-model step writes random weights; 'dummy': it writes config "
        "and tokenizer only and the server fills the weights itself (vLLM --load-format dummy), so an 8B or 70B "
        "shape costs no checkpoint write. vLLM only. 'trained': the step trains the model on `training`'s synthetic "
        "task (seeded, cached by its parameters under SERVESWEEP_MODEL_CACHE, default ~/.cache/servesweep/models), "
        "so its accuracy means something.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="The training of 'trained' weights.")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in MODEL_PRESETS:
            raise ValueError(f"unknown preset {value!r}; known: {', '.join(MODEL_PRESETS)}")
        return value

    def resolved_shape(self) -> ModelShape:
        return self.shape or MODEL_PRESETS[self.preset]


class QuantizeSpec(_Strict):
    """How the quantize step makes a checkpoint method's variant (llm-compressor)."""

    w4a16_algorithm: Literal["gptq", "awq"] = Field("gptq", description="Algorithm behind w4a16: 'gptq' or "
                                                    "'awq' (w8a8-int8 is SmoothQuant + GPTQ; w8a8-fp8 needs none).")
    calibration_samples: int = Field(64, ge=1, le=4096, description="Calibration texts, 1..4096: the trained "
                                     "task's training examples, or the workload's prompts for other weights.")
    max_seq_length: int = Field(64, ge=8, le=MAX_TOKENS, description="Calibration sequence length, tokens.")
    smoothing_strength: float = Field(0.8, gt=0, lt=1, description="SmoothQuant's alpha, (0, 1).")
    cache_uri: str = Field("", max_length=1024, description="Where quantized checkpoints are cached: a local "
                           "directory or gs://bucket/prefix; empty: SERVESWEEP_QUANT_CACHE, else "
                           "~/.cache/servesweep/quantized.")
    pretrained: str = Field("", max_length=1024, description="A pre-quantized checkpoint (local path) passed "
                            "through as is instead of quantizing the source; empty: quantize.")



AccuracyTask = Literal["perplexity", "exact_match"]
ACCURACY_TASKS: tuple[AccuracyTask, ...] = ("perplexity", "exact_match")


class AccuracySpec(_Strict):
    """The accuracy step: the served variant scored on the trained task's held-out split (servesweep.heldout) and
    compared with the same model's unquantized variant in the lake."""

    enabled: bool | None = Field(None, description="Score the variant. Unset: on when model.weights is "
                                 "'trained', else off (random weights score nothing meaningful in any precision).")
    tasks: list[AccuracyTask] = Field(default_factory=lambda: list(ACCURACY_TASKS), min_length=1,
                                      max_length=2, description="What to score: 'perplexity' (of the answers "
                                      "given the problems, from the server's prompt log-probabilities) and "
                                      "'exact_match' (greedy answers, through lm-evaluation-harness).")
    items: int | None = Field(None, ge=1, le=100_000, description="Held-out problems scored, 1..100000 (the "
                              "split's first ones); unset: all of the split (256 for 2 or more digits).")
    max_exact_match_drop: float = Field(0.02, ge=0, le=1, description="A variant fails when its exact match is "
                                        "lower than the baseline's by more than this share, [0, 1] (0.02: 2 "
                                        "points).")
    max_perplexity_increase: float = Field(0.05, ge=0, le=100, description="A variant fails when its perplexity "
                                           "exceeds the baseline's by more than this fraction, [0, 100] (0.05: 5 %).")
    concurrency: int = Field(8, ge=1, le=256, description="Scoring requests in flight at once, 1..256.")
    request_timeout_s: float = Field(120.0, gt=0, le=3600, description="Timeout of one scoring request, s.")

    @field_validator("tasks")
    @classmethod
    def _each_once(cls, value: list[AccuracyTask]) -> list[AccuracyTask]:
        if len(set(value)) != len(value):
            raise ValueError("tasks repeat an entry")
        return value


class SecretRef(_Strict):
    """One key of a Kubernetes Secret in the run's namespace."""

    secret: str = Field(..., pattern=_K8S_NAME, description="Secret name (a DNS subdomain, at most 253).")
    key: str = Field(..., pattern=_SECRET_KEY, description="Key inside the Secret (at most 253 characters).")


class ExternalEndpoint(_Strict):
    """A server that already runs somewhere (server.kind external): servesweep only sends it load."""

    base_url: str = Field(..., max_length=1024, pattern=_HTTP_URL, description="http(s)://host[:port][/prefix] "
                          "of its OpenAI-compatible API (the part before /v1); in a cluster a Service DNS name, e.g. "
                          "http://vllm.serving.svc.cluster.local:8000.")
    served_model_name: str = Field(..., min_length=1, max_length=256, description="The model name the endpoint "
                                   "serves (the requests' `model` field).")
    metrics_url: str | None = Field(None, max_length=1024, pattern=_HTTP_URL, description="Its Prometheus page "
                                    "(e.g. http://host:8000/metrics); null: no server-side metrics, and the run "
                                    "says so (console and runs.notes).")
    metric_prefix: str = Field("vllm:", max_length=64, description="Prefix of the server's metric names that are "
                               "kept (vllm:, tgi_, sglang:, ...).")
    auth_env: EnvName | None = Field(None, description="Environment variable holding the token sent as "
                                     f"`auth_header: auth_scheme <token>` (read where the steps run; with "
                                     f"auth_secret: default {ENDPOINT_TOKEN_ENV}); null: no auth header.")
    auth_secret: SecretRef | None = Field(None, description="Cluster runs: the Kubernetes Secret key that fills "
                                          "auth_env in the deploy-server and sweep step pods (secretKeyRef).")
    auth_header: str = Field("Authorization", pattern=_HEADER_NAME, description="Header the token goes in.")
    auth_scheme: str = Field("Bearer", max_length=32, pattern=r"^[A-Za-z0-9-]*$", description="Word before the "
                             "token in the header ('' : the token alone).")
    tokenizer_dir: str | None = Field(None, max_length=1024, description="A local directory with the served "
                                      "model's tokenizer.json, to build prompts of exact lengths; null: the "
                                      "tokenizer of `model` (generated), so prompt lengths are approximate and "
                                      "the server's usage counts are what the lake records.")

    @property
    def token_env(self) -> str | None:
        """The variable the token is read from, if any."""
        return self.auth_env or (ENDPOINT_TOKEN_ENV if self.auth_secret else None)


class ServerSpec(_Strict):
    """The model server: its kind, context, start-up limit, memory and extra flags or environment."""

    kind: ServerKind = Field("vllm", description="Model server: vllm and transformers run locally and on GKE, the "
                             "others on GKE only (servesweep/k8s/servers.py); external: an endpoint that already "
                             "runs (server.external), nothing is provisioned, deployed or stopped.")
    external: ExternalEndpoint | None = Field(None, description="kind external only: where the endpoint is and "
                                              "how to reach it.")
    max_model_len: int = Field(1024, gt=0, le=MAX_TOKENS, description="Context length, tokens, 1..2^20.")
    startup_timeout_s: float = Field(600.0, gt=0, le=MAX_SECONDS, description="Seconds to wait for a ready server, "
                                     "at most 86400.")
    cpu_kv_cache_gib: int = Field(1, gt=0, le=4096, description="KV cache size for the CPU build "
                                  "(VLLM_CPU_KVCACHE_SPACE), GiB, 1..4096.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Fraction of each GPU's memory the server "
                                          "may take for weights, activations and KV cache (0..1]; GPU runs only.")
    extra_args: list[str] = Field(default_factory=list, max_length=256,
                                  description="Appended to the server command line (at most 256).")
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=32_768)]] = Field(
        default_factory=dict, max_length=256,
        description="Environment of the server process (at most 256 variables, values up to 32 KiB). Values never "
        "enter pipeline parameters, logs or the lake; locally they reach the server process only. On GKE they "
        "travel in the submitted run's parameters: give tokens as secret_env there.")
    secret_env: dict[EnvName, SecretRef] = Field(
        default_factory=dict, max_length=64,
        description="GKE only: environment variables read from Kubernetes Secrets (secretKeyRef), e.g. "
        "{HF_TOKEN: {secret: hf-token, key: token}}; servesweep never sees the values (at most 64).")

    @model_validator(mode="after")
    def _env_names_once(self) -> ServerSpec:
        if both := sorted(set(self.env) & set(self.secret_env)):
            raise ValueError(f"{', '.join(both)} given in both env and secret_env")
        if (self.kind == "external") != (self.external is not None):
            raise ValueError("server.external is given exactly when server.kind is 'external'")
        return self


class AcceleratorSpec(_Strict):
    """What each server runs on, and how many of it."""

    type: Accelerator = Field("cpu", description="What each server runs on: cpu (local only) or a GKE accelerator "
                              "type.")
    count: int = Field(1, ge=1, le=16, description="Accelerators per server, 1..16 (the tensor-parallel size).")
    device_ids: list[int] | None = Field(
        None, description="Local GPU runs: the GPU indices (>= 0, distinct) the server may use "
        "(CUDA_VISIBLE_DEVICES), `count` of them; absent: the first `count` GPUs.")

    @model_validator(mode="after")
    def _devices_match_count(self) -> AcceleratorSpec:
        if self.device_ids is not None:
            if len(self.device_ids) != self.count or len(set(self.device_ids)) != self.count:
                raise ValueError(f"device_ids must name {self.count} distinct GPU(s)")
            if any(i < 0 for i in self.device_ids):
                raise ValueError("device_ids must be >= 0")
            if self.type == "cpu":
                raise ValueError("device_ids is for GPU accelerators")
        return self


# Request fields the load generator sets itself: extra_body may not replace them.
_OWN_FIELDS = frozenset({"model", "prompt", "messages", "stream", "stream_options", "max_tokens", "min_tokens",
                         "temperature", "top_p", "top_k", "ignore_eos", "stop", "generation_config"})


Api = Literal["completions", "chat"]
DistributionKind = Literal["fixed", "uniform", "normal", "lognormal"]
DatasetFormat = Literal["sharegpt", "jsonl", "hf"]
_WORKLOAD_NAME = r"^[a-z0-9][a-z0-9-]{0,39}$"
BUNDLED = "bundled:"  # a dataset path naming a file shipped in servesweep/data/


class LengthDistribution(_Strict):
    """How a synthetic length varies from request to request around the workload's own length (the mean),
    drawn with the model seed and clipped to [min, max]."""

    kind: DistributionKind = Field("fixed", description="fixed (every request the mean), uniform (min..max), "
                                   "normal (mean, stddev) or lognormal (median the mean, sigma).")
    min: int | None = Field(None, ge=1, le=MAX_TOKENS, description="Shortest length, tokens (uniform: required; "
                            "others: a clip, default 1 for outputs, 2 for prompts).")
    max: int | None = Field(None, ge=1, le=MAX_TOKENS, description="Longest length, tokens (uniform: required; "
                            "others: a clip, default twice the mean, within the server's context).")
    stddev: float | None = Field(None, gt=0, le=MAX_TOKENS, description="normal: standard deviation, tokens.")
    sigma: float | None = Field(None, gt=0, le=4, description="lognormal: sigma of the log, (0, 4].")

    @model_validator(mode="after")
    def _parameters(self) -> LengthDistribution:
        if self.kind == "uniform" and (self.min is None or self.max is None):
            raise ValueError("a uniform distribution needs min and max")
        if self.kind == "normal" and self.stddev is None:
            raise ValueError("a normal distribution needs stddev")
        if self.kind == "lognormal" and self.sigma is None:
            raise ValueError("a lognormal distribution needs sigma")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} exceeds max {self.max}")
        return self


class DatasetSpec(_Strict):
    """Prompts read from a local file or directory (never downloaded), one request per record, in a seeded
    order; a workload's input_tokens then bounds the prompts kept and output_tokens the max_tokens."""

    format: DatasetFormat = Field(..., description="sharegpt: ShareGPT JSON or JSONL ({conversations: [{from, "
                                  "value}, ...]}: the first human turn is the prompt, the reply after it the output "
                                  "length); jsonl: one {prompt, output_tokens?} per line; hf: a local Hugging Face "
                                  "`datasets` directory (save_to_disk) or a Parquet file.")
    path: str = Field(..., min_length=1, max_length=1024, description="The file or directory, where the steps "
                      f"run; '{BUNDLED}NAME' for a file shipped with servesweep (servesweep/data/NAME, e.g. "
                      f"{BUNDLED}sample-sharegpt.jsonl, generated by the project).")
    prompt_column: str = Field("prompt", min_length=1, max_length=128, description="hf: the prompt column.")
    output_column: str | None = Field(None, max_length=128, description="hf: a column of output lengths "
                                      "(tokens), or of reference answers (their token count); null: none.")
    min_prompt_tokens: int = Field(2, ge=2, le=MAX_TOKENS, description="Prompts shorter than this (tokens, by the "
                                   "model's tokenizer) are left out; 2..2^20.")
    output: Literal["dataset", "fixed", "distribution"] = Field(
        "dataset", description="Each request's max_tokens: the dataset's length (clipped to output_tokens; "
        "output_tokens where it has none), fixed (output_tokens), or drawn from output_distribution.")
    shuffle: bool = Field(True, description="Records in a seeded random order (the model seed); false: file "
                          "order. Either way they repeat when a point needs more requests than the file holds.")


class SharedPrefixSpec(_Strict):
    """Requests that share system prompts: `num_prefixes` distinct prefixes of `prefix_tokens` each, every
    request one of them (in turn) followed by a question of its own (input_tokens - prefix_tokens tokens)."""

    num_prefixes: int = Field(..., ge=1, le=10_000, description="Distinct shared prefixes, 1..10000.")
    prefix_tokens: int = Field(..., ge=1, le=MAX_TOKENS, description="Tokens of each prefix, below input_tokens.")


class ConversationSpec(_Strict):
    """Multi-turn conversations, as a chat client sends them: each request is one turn, sent once the turn
    before was answered, and carries every earlier user message with the server's own answers (chat: messages
    with roles; completions: the texts joined by spaces), so a server with prefix caching reuses what it
    computed for the turn before. Synthetic user messages, or with a sharegpt dataset the file's human turns.
    A turn waiting for its answer is not late: its scheduled time is when its slot and its answer were both
    there. A failed turn ends its conversation (its later turns are recorded as not sent)."""

    turns: int = Field(..., ge=2, le=64, description="Turns per conversation, 2..64 (with a dataset: at most "
                       "this many of each conversation's human turns).")
    conversations: int = Field(8, ge=1, le=10_000, description="Conversations running side by side, 1..10000 "
                               "(at least the batch size keeps the server's batch full); each one that ends "
                               "gives its place to the next.")
    question_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description="Synthetic: tokens of each user "
                                        "turn; null: input_tokens // turns. The whole history stays within "
                                        "input_tokens (a conversation that would outgrow it ends early).")


class WorkloadShape(_Strict):
    """One traffic shape: prompt and output lengths, and what each request asks the server for.

    The sampling defaults measure a fixed amount of work: greedy decoding and exactly `output_tokens`
    tokens per request (min_tokens = max_tokens, ignore_eos). Peers differ (README, "The spec").
    """

    input_tokens: int = Field(..., ge=2, le=MAX_TOKENS, description="Prompt length, tokens, 2..2^20 (with an "
                              "input_distribution its mean; with a dataset the longest prompt kept).")
    output_tokens: int = Field(..., ge=1, le=MAX_TOKENS, description="Output length, tokens, 1..2^20: the "
                               "requests' max_tokens (with an output_distribution its mean; with a dataset the "
                               "cap of its lengths).")
    name: str | None = Field(None, pattern=_WORKLOAD_NAME, description="Names the workload in its point ids "
                             "({mode}-b{batch}-{name}) instead of its lengths: needed when two workloads share "
                             "input_tokens and output_tokens. 1-40 lowercase letters, digits, '-'.")
    api: Api = Field("completions", description="completions: POST /v1/completions with a prompt; chat: POST "
                     "/v1/chat/completions with messages (a synthetic prompt is one user message; the server's "
                     "chat template adds its own tokens, counted in usage.prompt_tokens).")
    dataset: DatasetSpec | None = Field(None, description="Prompts from a file instead of synthetic ones.")
    shared_prefix: SharedPrefixSpec | None = Field(None, description="Synthetic prompts that share system "
                                                   "prompts (prefix caching).")
    conversation: ConversationSpec | None = Field(None, description="Multi-turn conversations, each turn "
                                                  "sent after the answer before it and carrying the earlier turns "
                                                  "with the server's answers (prefix caching); with a sharegpt "
                                                  "dataset, its conversations replayed turn by turn.")
    input_distribution: LengthDistribution | None = Field(None, description="Synthetic prompts: how their "
                                                          "length varies (default fixed).")
    output_distribution: LengthDistribution | None = Field(None, description="How max_tokens varies (default "
                                                           "fixed; with a dataset only when dataset.output is "
                                                           "distribution).")
    requests_per_point: int | None = Field(
        None, ge=1, le=MAX_REQUESTS, description="This workload's own minimum requests per point, in place of "
        "sweep.requests_per_point (a 2048-token answer needs fewer requests than a 128-token one); 1..1e6.")
    temperature: float = Field(0.0, ge=0, le=100, description="Sampling temperature, 0..100; 0 (default): "
                               "greedy decoding.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling, (0, 1]; null (default): not "
                                "sent, the server's default.")
    top_k: int | None = Field(None, ge=1, le=MAX_TOKENS, description="Sample among the k likeliest tokens, "
                              "1..2^20; null (default): not sent, the server's default.")
    min_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS, description="Tokens before the server may end a "
                                   "response (EOS or a stop string), at most output_tokens; null (default): "
                                   "output_tokens, so every response is exactly output_tokens long.")
    ignore_eos: bool = Field(True, description="Keep generating past end-of-sequence (default true): output "
                             "lengths stay as asked, whatever a random-weight model emits.")
    stop: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=16, description="Stop strings (at most 16, 1-256 characters each); "
        "default none.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, max_length=64, description="Further request fields, sent as given (e.g. "
        "{repetition_penalty: 1.1, seed: 7}); at most 64, none of the fields servesweep sets itself.")

    @model_validator(mode="after")
    def _sampling(self) -> WorkloadShape:
        if self.min_tokens is not None and self.min_tokens > self.output_tokens:
            raise ValueError(f"min_tokens {self.min_tokens} exceeds output_tokens {self.output_tokens}")
        shapes = [name for name in ("dataset", "shared_prefix", "conversation") if getattr(self, name) is not None]
        if shapes == ["dataset", "conversation"] and self.dataset is not None and self.conversation is not None:
            self._replayed(self.dataset, self.conversation)
            shapes = ["dataset"]
        if len(shapes) > 1:
            raise ValueError(f"a workload takes one of dataset, shared_prefix, conversation; got {', '.join(shapes)}")
        if self.shared_prefix is not None and self.shared_prefix.prefix_tokens >= self.input_tokens:
            raise ValueError(f"shared_prefix.prefix_tokens {self.shared_prefix.prefix_tokens} must be below "
                             f"input_tokens {self.input_tokens} (each request adds a question of its own)")
        if shapes and self.input_distribution is not None:
            raise ValueError(f"input_distribution is for plain synthetic prompts, not {shapes[0]}")
        if self.dataset is not None and self.input_distribution is not None:
            raise ValueError("input_distribution is for synthetic prompts: a dataset brings its own lengths")
        if self.dataset is not None and self.dataset.min_prompt_tokens > self.input_tokens:
            raise ValueError(f"dataset.min_prompt_tokens {self.dataset.min_prompt_tokens} exceeds input_tokens "
                             f"{self.input_tokens}, the longest prompt kept")
        if (self.dataset is not None and self.dataset.output == "distribution") != (
                self.output_distribution is not None and self.dataset is not None):
            raise ValueError("with a dataset, output_distribution goes with dataset.output: distribution")
        if taken := sorted(set(self.extra_body) & _OWN_FIELDS):
            raise ValueError(f"extra_body may not set {', '.join(taken)}: use the workload's own fields")
        try:
            json.dumps(self.extra_body)
        except (TypeError, ValueError) as error:
            raise ValueError(f"extra_body must be JSON: {error}") from None
        return self

    @staticmethod
    def _replayed(dataset: DatasetSpec, conversation: ConversationSpec) -> None:
        """A dataset with a conversation: a ShareGPT file replayed turn by turn."""
        if dataset.format != "sharegpt":
            raise ValueError(f"a conversation replays a sharegpt dataset, not {dataset.format}")
        if conversation.question_tokens is not None:
            raise ValueError("conversation.question_tokens is for synthetic turns: the file brings its own")
        if dataset.output == "distribution":
            raise ValueError("a replayed conversation's output is dataset or fixed, not distribution")

    @property
    def min_output_tokens(self) -> int:
        """The min_tokens every request asks for (a request asking for fewer tokens: its max_tokens)."""
        return self.output_tokens if self.min_tokens is None else self.min_tokens

    @property
    def key(self) -> str:
        """What the workload's point ids say: its name, else i{input}-o{output}."""
        return self.name or f"i{self.input_tokens}-o{self.output_tokens}"

    @property
    def source(self) -> str:
        """The data source building its requests (servesweep.loadgen.sources)."""
        if self.dataset is not None:
            return "sharegpt-conversation" if self.conversation is not None else self.dataset.format
        if self.shared_prefix is not None:
            return "shared-prefix"
        return "conversation" if self.conversation is not None else "synthetic"


ArrivalKind = Literal["poisson", "gamma"]


class LoadStage(_Strict):
    """One stage of a multi-stage load: a fixed concurrency (closed loop) or an arrival rate (open loop, which
    may ramp linearly to another rate) held for a while. Each stage is a point of its own, run back to back."""

    duration_s: float = Field(..., gt=0, le=MAX_SECONDS, description="Seconds the stage lasts, at most 86400.")
    rate: float | None = Field(None, gt=0, le=1e6, description="Open loop: arrivals per second at the stage's "
                               "start, (0, 1e6].")
    ramp_to_rate: float | None = Field(None, gt=0, le=1e6, description="Open loop: the rate at the stage's end, "
                                       "reached linearly (a ramp); null: rate throughout.")
    concurrency: int | None = Field(None, ge=1, le=MAX_BATCH, description=f"Closed loop: requests in flight, "
                                    f"1..{MAX_BATCH}.")

    @model_validator(mode="after")
    def _one_kind(self) -> LoadStage:
        if (self.rate is None) == (self.concurrency is None):
            raise ValueError("a stage has either a rate (open loop) or a concurrency (closed loop)")
        if self.ramp_to_rate is not None and self.rate is None:
            raise ValueError("ramp_to_rate ramps an open-loop stage: give its starting rate")
        return self


class TraceSpec(_Strict):
    """Replay recorded arrivals: a JSONL file of {timestamp, input_tokens?, output_tokens?} or a CSV with a
    `timestamp` column (seconds; the first arrival is sent at the point's start), one point per workload."""

    path: str = Field(..., min_length=1, max_length=1024, description="The trace file (.jsonl or .csv) where the "
                      "steps run.")
    time_scale: float = Field(1.0, gt=0, le=1000, description="Multiplies the gaps between arrivals: 0.5 replays "
                              "twice as fast; (0, 1000].")
    max_requests: int | None = Field(None, ge=1, le=MAX_REQUESTS, description="Replay only the first this many "
                                     "arrivals; null: all.")


class StopSpec(_Strict):
    """When a sweep stops climbing to the next level (batch size, or stage), judged after each level of each
    workload; the stop is recorded on the last level's point (points.stop_reason). Unset rules are off."""

    min_throughput_gain: float | None = Field(None, ge=0, le=100, description="Stop when a level raised output "
                                              "throughput by less than this fraction over the best level "
                                              "before it (0.05: 5 %); 0..100.")
    error_rate_above: float | None = Field(None, ge=0, lt=1, description="Stop when more than this fraction of a "
                                           "level's measured requests failed; [0, 1).")
    slo_margin: float | None = Field(None, ge=1, le=100, description="Stop when a level's p99 SLO metric "
                                     "(slo.*_p99_ms) is over its limit by more than this factor (1.2: 20 % over); "
                                     "1..100.")
    max_gpu_hours: float | None = Field(None, gt=0, le=1e6, description="Stop before another level would take "
                                        "accelerator.count x the sweep's wall time past this many hours.")
    max_dollars: float | None = Field(None, gt=0, le=1e9, description="Stop before another level would cost more "
                                      "than this, USD, at the catalog's list price per accelerator-hour (no "
                                      "price for the accelerator: said, and not applied).")


class SweepSpec(_Strict):
    """The sweep: which batch sizes, how the load is offered, when a point stops, what is scraped."""

    batch_sizes: list[int] = Field(default_factory=lambda: [1, 2, 4], min_length=1, max_length=64,
                                   description=f"Batch sizes (concurrent requests), 1..{MAX_BATCH}, at most 64.")
    modes: list[SweepMode] = Field(default_factory=lambda: list[SweepMode](["client_concurrency"]), min_length=1,
                                   description=(
        "How batch size is swept, each mode once: client_concurrency (one server capped at the largest batch, the "
        "client's concurrency varies) and/or server_max_seqs (a server per batch size, capped at it)."))
    load: LoadKind = Field("closed", description="closed: fixed concurrency = batch size; open: arrivals at "
                           "request_rates (Poisson, or gamma with `arrival`).")
    arrival: ArrivalKind = Field("poisson", description="Open loop: how arrivals are spaced: poisson (exponential "
                                 "gaps) or gamma (gaps with shape `burstiness`, as vLLM's bench).")
    burstiness: float = Field(1.0, gt=0, le=100, description="Gamma arrivals: the gaps' shape, (0, 100]; 1 is "
                              "Poisson, below 1 burstier, above 1 more regular. The mean rate stays the same.")
    stages: list[LoadStage] = Field(default_factory=list, max_length=64, description="A multi-stage load instead "
                                    "of the batch-size grid: each stage (a concurrency, or a rate that may ramp, "
                                    "for duration_s) is a point, run back to back; at most 64.")
    trace: TraceSpec | None = Field(None, description="Replay a file of arrival times instead of the grid.")
    stop: StopSpec | None = Field(None, description="Stop climbing early (throughput plateau, errors, SLO, "
                                  "budget); the grid (client_concurrency mode) and the adaptive search. With repeats, "
                                  "the first repeat decides; later repeats stop at the same level.")
    resume: bool = Field(True, description="Run only the points the lake has not measured (ok or "
                         "partial) for the same configuration (points.config_hash, servesweep/identity.py: the run "
                         "id is not part of it); the others are copied into this run from the run that measured "
                         "them (points.reused_from_run). The adaptive strategy judges a probe the lake has on its "
                         "row, without running it. false (`servesweep run --force`): measure every point.")
    strategy: SweepStrategy = Field(
        "grid", description="grid: every batch size; adaptive: search 1..max(batch_sizes) for the largest batch "
        "meeting the SLO (doubling, then bisection on the measured curve); client_concurrency, closed loop only.")
    client_workers: int = Field(1, ge=1, le=64, description="Load-generator processes (one per client core), "
                                "1..64.")
    request_rates: list[float] = Field(
        default_factory=list, description="Open loop only: arrival rate for each batch size (same length), "
        "requests/s, > 0 and at most 1e6 each.")
    requests_per_point: int | None = Field(None, ge=1, le=MAX_REQUESTS, description="Measured requests per "
                                           "point, 1..1e6.")
    rounds_per_point: int = Field(
        0, ge=0, le=10_000, description="At least this many requests per client slot (batch size x rounds), so a "
        "large batch fills the server more than once; combined with requests_per_point by taking the larger; "
        "0..10000.")
    duration_s: float | None = Field(None, gt=0, le=MAX_SECONDS, description="Seconds per point, at most 86400.")
    warmup_requests: int = Field(1, ge=0, le=10_000, description="Unmeasured requests sent one at a time before "
                                 "each point, 0..10000.")
    warmup_s: float = Field(0.0, ge=0, le=MAX_SECONDS, description="Seconds of each point's own load (its "
                            "concurrency or arrival rate) before measuring; requests sent then are marked warmup "
                            "and excluded. Default 0.")
    cooldown_s: float = Field(0.0, ge=0, le=MAX_SECONDS, description="Open loop only: seconds of arrivals after "
                              "the measured ones, marked cooldown and excluded, so the last measured requests meet "
                              "the same load as the rest. Default 0.")
    repeats: int = Field(1, ge=1, le=100, description="Times to run each point, 1..100: the whole grid once, then "
                         "again (interleaved, not back to back). A point's row pools its repeats, with 95 % "
                         "intervals across them. Strategy adaptive: the search runs once, then every batch it "
                         "probed runs again per repeat, and the answer is judged on the pooled repeats.")
    request_timeout_s: float = Field(300.0, gt=0, le=MAX_SECONDS, description="Seconds per request, at most 86400.")
    connect_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Longest wait for a TCP connection to the server, seconds, at most 600.")
    first_byte_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait from sending a request to the first byte of its response, "
        "seconds, at most 3600.")
    idle_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Longest silence between reads once a response has begun (the wait for "
        "the first token included), seconds, at most 3600.")
    max_consecutive_failures: int = Field(
        10, ge=1, le=100000, description="Circuit breaker: a point stops, recorded as failed, after this many "
        "failed requests in a row (requests, 1..100000).")
    max_error_rate: float = Field(
        0.5, gt=0, le=1, description="Circuit breaker: a point stops, recorded as failed, when more than this "
        "fraction of its ended requests failed, judged once max_consecutive_failures have ended (fraction (0..1]; "
        "1: off).")
    scrape_interval_s: float = Field(0.5, ge=0.01, le=3600, description="Seconds between metric scrapes, "
                                     "0.01..3600.")

    @field_validator("batch_sizes")
    @classmethod
    def _positive_unique(cls, value: list[int]) -> list[int]:
        if any(b < 1 for b in value):
            raise ValueError("batch sizes must be >= 1")
        if any(b > MAX_BATCH for b in value):
            raise ValueError(f"batch sizes must be <= {MAX_BATCH}")
        if len(set(value)) != len(value):
            raise ValueError("batch sizes must not repeat")
        return sorted(value)

    @field_validator("modes")
    @classmethod
    def _modes_once(cls, value: list[SweepMode]) -> list[SweepMode]:
        # A mode given twice would plan its points twice, under the same point ids.
        if len(set(value)) != len(value):
            raise ValueError("sweep modes must not repeat")
        return value

    @property
    def shaped(self) -> bool:
        """Whether stages or a trace replace the batch-size grid."""
        return bool(self.stages) or self.trace is not None

    @model_validator(mode="after")
    def _one_stop_rule(self) -> SweepSpec:
        if self.stop is not None and list(self.modes) != ["client_concurrency"]:
            raise ValueError("sweep.stop climbs one server's levels: client_concurrency mode")
        if self.shaped:
            if self.stages and self.trace is not None:
                raise ValueError("give stages or a trace, not both")
            if list(self.modes) != ["client_concurrency"] or self.strategy != "grid" or self.repeats > 1:
                raise ValueError("stages and traces run in client_concurrency mode, strategy grid, one repeat")
            return self
        if self.requests_per_point is None and self.duration_s is None and not self.rounds_per_point:
            raise ValueError("give requests_per_point, rounds_per_point or duration_s")
        if self.load == "open" and len(self.request_rates) != len(self.batch_sizes):
            raise ValueError("open loop needs one request rate per batch size")
        if any(r <= 0 or r > 1e6 for r in self.request_rates):
            raise ValueError("request rates must be > 0 and <= 1e6 requests/s")
        if self.strategy == "adaptive" and (self.load != "closed" or list(self.modes) != ["client_concurrency"]):
            raise ValueError("the adaptive strategy runs closed loop in client_concurrency mode only")
        if self.cooldown_s and self.load != "open":
            raise ValueError("cooldown_s is for open loop: a closed loop has no arrivals to keep on")
        return self


P99_LIMITS = ("ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms")
REQUEST_LIMITS = ("request_ttft_ms", "request_tpot_ms", "request_itl_ms", "request_e2e_ms")


class SLOSpec(_Strict):
    """Latency targets: p99 limits a point must meet, and per-request limits that define goodput."""

    ttft_p99_ms: float | None = Field(None, gt=0, le=MAX_SLO_MS, description="p99 time to first token, ms, "
                                      "at most 86400000 (a day).")
    tpot_p99_ms: float | None = Field(None, gt=0, le=MAX_SLO_MS, description="p99 time per output token, ms, "
                                      "at most 86400000.")
    e2e_p99_ms: float | None = Field(None, gt=0, le=MAX_SLO_MS, description="p99 request latency, ms, at most "
                                     "86400000.")
    request_ttft_ms: float | None = Field(None, gt=0, le=MAX_SLO_MS, description="Per request: time to first "
                                          "token, ms; a request over it misses the SLO (goodput).")
    request_tpot_ms: float | None = Field(None, gt=0, le=MAX_SLO_MS, description="Per request: time per output "
                                          "token after the first, ms.")
    request_itl_ms: float | None = Field(None, gt=0, le=MAX_SLO_MS, description="Per request: the largest gap "
                                         "between two token chunks, ms.")
    request_e2e_ms: float | None = Field(None, gt=0, le=MAX_SLO_MS, description="Per request: end-to-end "
                                         "latency, ms.")
    min_attainment: float = Field(0.9, gt=0, le=1, description="With a per-request limit set, a point meets the "
                                  "SLO when at least this fraction of its requests met every limit (default 0.9), "
                                  "and the ideal batch is the one with the most goodput.")

    @property
    def has_p99_limits(self) -> bool:
        return any(getattr(self, name) is not None for name in P99_LIMITS)

    @property
    def has_request_limits(self) -> bool:
        return any(getattr(self, name) is not None for name in REQUEST_LIMITS)

    @property
    def has_limits(self) -> bool:
        return self.has_p99_limits or self.has_request_limits


class BenchmarkSpec(_Strict):
    """One benchmark run: a model on a server on an accelerator, swept over batch sizes."""

    name: str = Field("local-smoke", min_length=1, max_length=200, description="Run name (1-200 characters).")
    run_id: str = Field("", description="Empty: derived from the name and the start time. Else 1-80 letters, "
                        "digits, '.', '_', '-', starting with a letter or digit.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The model the servers load.")
    server: ServerSpec = Field(default_factory=ServerSpec, description="The model server and its settings.")
    quantization: Quantization = Field(
        "none", description="Weight quantization. fp8/int8/awq/gptq: the server applies it (vLLM --quantization; "
        "awq/gptq need a checkpoint in that format). w8a8-fp8/w8a8-int8/w4a16: a compressed-tensors checkpoint "
        "(vLLM reads the method from its config); with model.weights 'dummy' the server draws weights in that "
        "layout. none: the model dtype.")
    variants: list[Quantization] = Field(
        default_factory=list, max_length=8, description="Several quantization variants, measured by one "
        "`servesweep run`: one run per variant, in sequence, the unquantized baseline ('none') first, each with "
        "its own run id `<run_id>-<variant>`, all from one source checkpoint. Each variant is a `quantization` "
        "value; empty: the single `quantization`. The cluster pipelines run one variant per run.")
    quantize: QuantizeSpec = Field(default_factory=QuantizeSpec, description="The quantize step.")
    accuracy: AccuracySpec = Field(default_factory=AccuracySpec, description="The accuracy step: the variant's "
                                   "perplexity and exact match, and their change from the unquantized baseline.")
    accelerator: AcceleratorSpec = Field(default_factory=AcceleratorSpec, description="What each server runs on.")
    workloads: list[WorkloadShape] = Field(
        default_factory=lambda: [WorkloadShape(input_tokens=64, output_tokens=32)], min_length=1, max_length=64,
        description="Prompt/output shapes, 1..64 of them, each shape once.")
    sweep: SweepSpec = Field(default_factory=lambda: SweepSpec(requests_per_point=8),
                             description="Batch sizes, load and stop rules of the sweep.")
    slo: SLOSpec = Field(default_factory=SLOSpec, description="Latency targets the report and the adaptive strategy "
                         "judge points by; unset limits are not checked.")
    lake_uri: str = Field("./lake", min_length=1, max_length=1024,
                          description="Local directory or gs://bucket/prefix (at most 1024 characters).")
    gke: GKESpec | None = Field(None, description="Run the servers on this GKE cluster; absent: local processes.")

    @field_validator("run_id")
    @classmethod
    def _run_id_path_safe(cls, value: str) -> str:
        if value and not valid_run_id(value):
            raise ValueError(RUN_ID_RULE)
        return value

    @field_validator("lake_uri")
    @classmethod
    def _lake_scheme(cls, value: str) -> str:
        # Checked here, not when the write-lake step finally fails after the whole sweep.
        if value.startswith("gs://"):
            if not _GS_URI.match(value):
                raise ValueError("gs:// lakes are gs://BUCKET[/prefix] with a bucket name (lowercase letters, "
                                 "digits, '.', '_', '-')")
        elif "://" in value and not value.startswith("file://"):
            raise ValueError("a lake is a local directory, file://path or gs://bucket/prefix")
        return value

    @model_validator(mode="after")
    def _fits_context(self) -> BenchmarkSpec:
        shapes = [w.key for w in self.workloads]
        if len(set(shapes)) != len(shapes):
            raise ValueError("workloads repeat an input/output shape (their points would share ids): give each a "
                             "`name`")
        for shape in self.workloads:
            if shape.input_tokens + shape.output_tokens > self.server.max_model_len:
                raise ValueError(
                    f"workload {shape.input_tokens}+{shape.output_tokens} tokens exceeds "
                    f"server.max_model_len={self.server.max_model_len}"
                )
        external = self.server.kind == "external"
        if not external and self.server.max_model_len > self.model.resolved_shape().max_position_embeddings:
            raise ValueError("server.max_model_len exceeds the model's max_position_embeddings")
        if self.sweep.stop is not None and self.sweep.stop.slo_margin is not None and not self.slo.has_p99_limits:
            raise ValueError("sweep.stop.slo_margin needs an SLO limit (slo.*_p99_ms)")
        if self.sweep.strategy == "adaptive" and not self.slo.has_p99_limits:
            raise ValueError("the adaptive strategy needs at least one SLO limit (slo.*_p99_ms)")
        if self.model.weights == "dummy" and self.server.kind != "vllm":
            raise ValueError("model.weights 'dummy' needs server.kind 'vllm' (--load-format dummy)")
        for method in self.variants or [self.quantization]:
            if is_checkpoint_method(method) and self.server.kind not in ("vllm", "external"):
                raise ValueError(f"quantization {method!r} is a compressed-tensors checkpoint: it needs "
                                 "server.kind 'vllm'")
        self._check_variants()
        if self.gke is not None and self.accelerator.type == "cpu" and not external:
            raise ValueError("a gke run needs a GPU accelerator; accelerator 'cpu' runs locally (drop `gke`)")
        self._check_secret_env()
        return self

    def _check_variants(self) -> None:
        if not self.variants:
            return
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants repeat a method (their runs would share an id)")
        if self.quantization != "none":
            raise ValueError("give either `quantization` (one variant) or `variants` (several), not both")
        if self.quantize.pretrained:
            raise ValueError("quantize.pretrained is one checkpoint, one variant: give it with `quantization`, "
                             "not `variants`")
        longest = max(len(v) for v in self.variants)
        if self.run_id and len(self.run_id) + 1 + longest > 80:
            raise ValueError(f"run_id is too long for variants: `<run_id>-<variant>` must fit 80 characters, so "
                             f"at most {79 - longest} for these variants")

    def variant_specs(self) -> list[BenchmarkSpec]:
        """One spec per variant, the baseline 'none' first (this spec alone without `variants`): `quantization`
        set, `variants` emptied, run id `<run_id>-<variant>` (empty stays empty: the orchestrator derives it)."""
        if not self.variants:
            return [self]
        ordered = sorted(self.variants, key=lambda v: v != "none")  # stable: the others keep their order
        return [self.model_copy(update={"quantization": v, "variants": [],
                                        "run_id": variant_run_id(self.run_id, v) if self.run_id else ""})
                for v in ordered]

    def _check_secret_env(self) -> None:
        if not self.server.secret_env:
            return
        if self.gke is None:
            raise ValueError("server.secret_env reads Kubernetes Secrets, which only a gke run has; "
                             "locally put the value in server.env")
        if "HF_TOKEN" in self.server.secret_env and getattr(self.gke.model, "token_secret", None):
            raise ValueError("server.secret_env HF_TOKEN: the hub token already comes from gke.model.token_secret")

    @property
    def accuracy_enabled(self) -> bool:
        """Whether the accuracy step scores this run (by default only a trained model's)."""
        enabled = self.accuracy.enabled
        return self.model.weights == "trained" if enabled is None else enabled

    def with_run_id(self, job_id: str = "") -> BenchmarkSpec:
        """The spec with a concrete run id when none was given: name + the orchestrator's job id when there is
        one (a rerun or clone of a KFP run is a new job, so it cannot land in the old run's partition), else
        name + UTC start time."""
        if self.run_id:
            return self
        return self.model_copy(update={"run_id": run_id_for(self.name, job_id)})

    def with_fields(self, source: str, **fields: Any) -> BenchmarkSpec:
        """The spec with top-level fields replaced and validated again (model_copy would skip validation)."""
        return parse_spec(self.model_dump(mode="json") | fields, source)


def _format_error(error: ValidationError, source: str) -> SpecError:
    """One line for one problem; a header and one line per problem for several."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    if len(problems) == 1:
        return SpecError(f"invalid benchmark spec ({source}): {problems[0]}")
    return SpecError("\n".join([f"invalid benchmark spec ({source}):", *(f"  - {p}" for p in problems)]))


def parse_spec(data: Any, source: str = "spec") -> BenchmarkSpec:
    """Validate a mapping into a spec; errors become one SpecError naming each bad field."""
    if not isinstance(data, dict):
        raise SpecError(f"invalid benchmark spec ({source}): expected a mapping, got {type(data).__name__}")
    try:
        return BenchmarkSpec.model_validate(data)
    except ValidationError as error:
        raise _format_error(error, source) from None


def load_spec(path: str | Path) -> BenchmarkSpec:
    """A spec file; an empty one is an error (it would silently run the defaults)."""
    return parse_spec(read_mapping(path, "spec", SpecError, empty_ok=False), source=str(path))


def spec_from_json(text: str) -> BenchmarkSpec:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"spec JSON is malformed: {error}") from None
    except RecursionError:
        raise SpecError("spec JSON is nested too deeply to read") from None
    return parse_spec(data, source="spec_json")


def public_dump(spec: BenchmarkSpec) -> dict[str, Any]:
    """The spec as JSON data with server.env values withheld: what pipeline parameters and files may carry."""
    data = spec.model_dump(mode="json")
    data["server"]["env"] = withhold(spec.server.env)
    return data


# --- pipeline parameters: the typed fields a user fills in the KFP UI ---------------------------

class PipelineParams(_Strict):
    """Flat, typed pipeline parameters; `spec_yaml` carries any field not exposed on its own.

    Each is checked as the spec field it sets (its bounds are that field's), after the merge with spec_yaml.
    """

    run_name: str = Field("local-smoke", description="Sets name (the run's name).")
    run_id: str = Field("", description="Sets run_id (empty: derived from the name and the start time).")
    model_preset: str = Field("tiny", description="Sets model.preset.")
    model_dtype: str = Field("bfloat16", description="Sets model.dtype.")
    server_kind: str = Field("vllm", description="Sets server.kind.")
    quantization: str = Field("none", description="Sets quantization.")
    accelerator: str = Field("cpu", description="Sets accelerator.type.")
    accelerator_count: int = Field(1, description="Sets accelerator.count (accelerators per server).")
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 2, 4], description="Sets sweep.batch_sizes.")
    sweep_modes: list[str] = Field(default_factory=lambda: ["client_concurrency"], description="Sets sweep.modes.")
    input_tokens: int = Field(64, description="Sets the first workload's input_tokens (prompt length, tokens).")
    output_tokens: int = Field(32, description="Sets the first workload's output_tokens (output length, tokens).")
    requests_per_point: int = Field(8, description="Sets sweep.requests_per_point; 0: unset.")
    slo_ttft_p99_ms: float = Field(0.0, description="Sets slo.ttft_p99_ms, ms; 0: no limit.")
    slo_tpot_p99_ms: float = Field(0.0, description="Sets slo.tpot_p99_ms, ms; 0: no limit.")
    temperature: float = Field(0.0, description="Sets every workload's temperature (0: greedy).")
    top_p: float = Field(0.0, description="Sets every workload's top_p; 0: not sent (the server's default).")
    top_k: int = Field(0, description="Sets every workload's top_k; 0: not sent (the server's default).")
    min_tokens: int = Field(-1, description="Sets every workload's min_tokens; -1: unset (= output_tokens).")
    ignore_eos: bool = Field(True, description="Sets every workload's ignore_eos.")
    stop: list[str] = Field(default_factory=list, description="Sets every workload's stop strings.")
    lake_uri: str = Field("./lake", description="Sets lake_uri.")
    spec_yaml: str = Field("", description="The whole spec as YAML (server.env values withheld); the typed "
                           "parameters above override it where they differ from its own values.")


def spec_to_params(spec: BenchmarkSpec, *, withhold_env: bool = True) -> PipelineParams:
    """Flatten a spec; the full spec rides along in spec_yaml so nothing is lost, but server.env values
    (withheld unless `withhold_env` is False: a GKE submission, whose server has no other way to get them)."""
    first = spec.workloads[0]
    return PipelineParams(
        run_name=spec.name,
        run_id=spec.run_id,
        model_preset=spec.model.preset,
        model_dtype=spec.model.dtype,
        server_kind=spec.server.kind,
        quantization=spec.quantization,
        accelerator=spec.accelerator.type,
        accelerator_count=spec.accelerator.count,
        batch_sizes=spec.sweep.batch_sizes,
        sweep_modes=list(spec.sweep.modes),
        input_tokens=first.input_tokens,
        output_tokens=first.output_tokens,
        requests_per_point=spec.sweep.requests_per_point or 0,
        slo_ttft_p99_ms=spec.slo.ttft_p99_ms or 0.0,
        slo_tpot_p99_ms=spec.slo.tpot_p99_ms or 0.0,
        temperature=first.temperature,
        top_p=first.top_p or 0.0,
        top_k=first.top_k or 0,
        min_tokens=-1 if first.min_tokens is None else first.min_tokens,
        ignore_eos=first.ignore_eos,
        stop=list(first.stop),
        lake_uri=spec.lake_uri,
        spec_yaml=yaml.safe_dump(public_dump(spec) if withhold_env else spec.model_dump(mode="json"),
                                 sort_keys=False),
    )


def spec_from_params(params: dict[str, Any]) -> BenchmarkSpec:
    """Build a spec from pipeline parameters.

    With `spec_yaml` set, it is the base and the typed parameters are ignored unless they differ from
    the base (a user who edits a field in the UI wins). Without it, the typed parameters are the spec.
    """
    try:
        flat = PipelineParams.model_validate(params)
    except ValidationError as error:
        raise _format_error(error, "pipeline parameters") from None
    base = parse_mapping(flat.spec_yaml, "spec_yaml", SpecError)
    typed = {
        "name": flat.run_name,
        "run_id": flat.run_id,
        "quantization": flat.quantization,
        "lake_uri": flat.lake_uri,
        "model": {"preset": flat.model_preset, "dtype": flat.model_dtype},
        "server": {"kind": flat.server_kind},
        "accelerator": {"type": flat.accelerator, "count": flat.accelerator_count},
        "sweep": {
            "batch_sizes": flat.batch_sizes,
            "modes": flat.sweep_modes,
            "requests_per_point": flat.requests_per_point or None,
        },
        "slo": {"ttft_p99_ms": flat.slo_ttft_p99_ms or None, "tpot_p99_ms": flat.slo_tpot_p99_ms or None},
    }
    workload = _workload_params(flat)
    if not base:
        return _one_variant(parse_spec({**typed, "workloads": [{**workload["first"], **workload["every"]}]},
                                       source="pipeline parameters"))
    defaults = spec_to_params(parse_spec(base, "spec_yaml")).model_dump()
    changed = {k for k, v in flat.model_dump().items() if k != "spec_yaml" and v != defaults[k]}
    merged = _deep_merge(base, _only_changed(typed, changed - set(_WORKLOAD_PARAMS)))
    workloads = [dict(w) for w in (merged.get("workloads") or [{}])]
    for key in changed & set(_WORKLOAD_PARAMS):  # a UI edit sets that field, keeping the rest of each workload
        scope = _WORKLOAD_PARAMS[key]
        for w in workloads[:1] if scope == "first" else workloads:
            w[key] = workload[scope][key]
    return _one_variant(parse_spec({**merged, "workloads": workloads}, source="pipeline parameters"))


def _one_variant(spec: BenchmarkSpec) -> BenchmarkSpec:
    if spec.variants:  # a pipeline run serves one variant: measuring only the first would be a silent half
        raise SpecError("invalid benchmark spec (pipeline parameters): variants: a pipeline run measures one "
                        "variant; `servesweep run` and `servesweep submit` start one run per variant")
    return spec


# Workload fields as typed parameters: the lengths set the first workload, sampling sets every one.
_WORKLOAD_PARAMS = {"input_tokens": "first", "output_tokens": "first", "temperature": "every", "top_p": "every",
                    "top_k": "every", "min_tokens": "every", "ignore_eos": "every", "stop": "every"}


def _workload_params(flat: PipelineParams) -> dict[str, dict[str, Any]]:
    """The workload fields the typed parameters set, with their 'unset' sentinels (KFP has no null) as None."""
    return {"first": {"input_tokens": flat.input_tokens, "output_tokens": flat.output_tokens},
            "every": {"temperature": flat.temperature, "top_p": flat.top_p or None, "top_k": flat.top_k or None,
                      "min_tokens": None if flat.min_tokens < 0 else flat.min_tokens, "ignore_eos": flat.ignore_eos,
                      "stop": list(flat.stop)}}


_PARAM_PATHS = {
    "run_name": ("name",), "run_id": ("run_id",), "quantization": ("quantization",),
    "lake_uri": ("lake_uri",), "model_preset": ("model", "preset"), "model_dtype": ("model", "dtype"),
    "server_kind": ("server", "kind"), "accelerator": ("accelerator", "type"),
    "accelerator_count": ("accelerator", "count"), "batch_sizes": ("sweep", "batch_sizes"),
    "sweep_modes": ("sweep", "modes"), "requests_per_point": ("sweep", "requests_per_point"),
    "slo_ttft_p99_ms": ("slo", "ttft_p99_ms"), "slo_tpot_p99_ms": ("slo", "tpot_p99_ms"),
}


def _only_changed(typed: dict[str, Any], changed: set[str]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for param in changed:
        path = _PARAM_PATHS[param]
        source, target = typed, kept
        for key in path[:-1]:
            source = source[key]
            target = target.setdefault(key, {})
        target[path[-1]] = source[path[-1]]
    return kept


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
