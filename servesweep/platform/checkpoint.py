"""Random-weight checkpoints: a directory any server can load, made here with no download.

The checkpoint is a random-weight Llama of a given shape plus a word-level tokenizer trained here with
`tokenizers`: the compute and memory traffic of the real architecture. Random weights produce random
tokens, which is fine because every request uses `ignore_eos` and a fixed `max_tokens`. The local
platform generates it where its servers read it; the GKE platform generates it once and publishes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from servesweep.platform.types import ModelInfo
from servesweep.quantization import compressed_tensors_config, is_checkpoint_method
from servesweep.spec import ModelShape, ModelSpec
from servesweep.synthetic_task import TASK_WORDS

# Bump when training or the tokenizer changes what a given set of parameters produces (it is in the cache key).
TRAINER_VERSION = 1
TRAINING_FILE = "servesweep-training.json"

SPECIAL_TOKENS = ["<s>", "</s>", "<unk>"]
_SHARD_BYTES = 2 * 1024**3
_SYLLABLES = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]  # 75 syllables


def synthetic_words(count: int) -> list[str]:
    """`count` distinct pronounceable pseudo-words, deterministic (the tokenizer's training corpus)."""
    words: list[str] = []
    n = len(_SYLLABLES)
    index = 0
    while len(words) < count:
        parts, value = [], index
        while True:
            parts.append(_SYLLABLES[value % n])
            value //= n
            if value == 0:
                break
            value -= 1
        words.append("".join(reversed(parts)))
        index += 1
    return words


def train_tokenizer(vocab_size: int, out_dir: Path, task_words: Sequence[str] = ()) -> int:
    """Train a word-level tokenizer whose every word is one token; save it HF-style. Returns its size.
    `task_words` (a trained model's digits and signs) come first, the pseudo-words fill the rest."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    words = [*task_words, *synthetic_words(vocab_size - len(SPECIAL_TOKENS) - len(task_words))]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tokenizer.train_from_iterator((" ".join(words[i : i + 64]) for i in range(0, len(words), 64)), trainer)
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=1_000_000,
    )
    fast.save_pretrained(out_dir)
    return tokenizer.get_vocab_size()


def _llama_config(spec: ModelSpec, shape: ModelShape, tokenizer_size: int) -> Any:  # a transformers LlamaConfig
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=max(shape.vocab_size, tokenizer_size),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=shape.tie_word_embeddings,
        bos_token_id=0,
        eos_token_id=1,
        rms_norm_eps=1e-5,
        torch_dtype=spec.dtype,
    )


def write_random_weights(config: Any, dtype: str, seed: int, out_dir: Path) -> int:
    """Write safetensors shards with the parameter names and shapes transformers' Llama expects.

    Random numbers come from the GPU when there is one: an 8B model's 16 GB are drawn in seconds
    there, minutes on a CPU.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        names_shapes = [(n, tuple(p.shape)) for n, p in LlamaForCausalLM(config).named_parameters()]
    torch_dtype = getattr(torch, dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(seed)
    shards: list[dict[str, Any]] = [{}]  # name -> torch.Tensor
    shard_bytes = 0
    total = 0
    for name, shape in names_shapes:
        if name.endswith("norm.weight"):
            tensor = torch.ones(shape, dtype=torch_dtype)
        else:
            tensor = (torch.randn(shape, generator=generator, device=device) * 0.02).to(torch_dtype).cpu()
        size = tensor.numel() * tensor.element_size()
        if shard_bytes and shard_bytes + size > _SHARD_BYTES:
            shards.append({})
            shard_bytes = 0
        shards[-1][name] = tensor
        shard_bytes += size
        total += tensor.numel()
    _save_shards(shards, out_dir, save_file)
    return total


def count_parameters(config: Any) -> int:
    """Parameters of transformers' Llama for `config`, counted on the meta device (nothing allocated)."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        return int(sum(p.numel() for p in LlamaForCausalLM(config).parameters()))


def _save_shards(shards: list[dict[str, Any]], out_dir: Path, save_file: Callable[..., None]) -> None:
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, start=1):
        filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, filename))
    total_size = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def load_model(spec: ModelSpec, out_dir: str | Path, quantization: str = "none") -> ModelInfo:
    """Materialise `spec` into `out_dir` (created) and describe what was written. A checkpoint quantization
    (servesweep.quantization) on dummy weights goes into config.json, for the server to draw that layout."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = spec.resolved_shape()
    if spec.weights == "trained":
        return _trained_model(spec, shape, out, started)
    tokenizer_size = train_tokenizer(shape.vocab_size, out)
    config = _llama_config(spec, shape, tokenizer_size)
    config.architectures = ["LlamaForCausalLM"]  # servers pick the model class from this
    if spec.weights == "dummy" and is_checkpoint_method(quantization):
        config.quantization_config = compressed_tensors_config(quantization)
    config.save_pretrained(out)
    if spec.weights == "dummy":
        parameters = count_parameters(config)
    else:
        parameters = write_random_weights(config, spec.dtype, spec.seed, out)
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1}))
    return ModelInfo(
        path=str(out.resolve()),
        served_name=spec.name,
        parameters=parameters,
        dtype=spec.dtype,
        bytes_on_disk=sum(f.stat().st_size for f in out.iterdir() if f.is_file()),
        seconds=time.perf_counter() - started,
        vocab_size=config.vocab_size,
        tokenizer_vocab_size=tokenizer_size,
        shape=shape,
    )


def model_cache_root() -> Path:
    return Path(os.environ.get("SERVESWEEP_MODEL_CACHE", Path.home() / ".cache" / "servesweep" / "models"))


def trained_key(spec: ModelSpec, shape: ModelShape) -> str:
    """Cache key of a trained checkpoint: everything that decides its bytes."""
    import torch
    import transformers

    fields = {"shape": shape.model_dump(), "training": spec.training.model_dump(), "seed": spec.seed,
              "dtype": spec.dtype, "trainer": TRAINER_VERSION, "torch": torch.__version__,
              "transformers": transformers.__version__}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def _trained_model(spec: ModelSpec, shape: ModelShape, out: Path, started: float) -> ModelInfo:
    """Train (or reuse the cached) addition model; copy it into `out`."""
    cached = model_cache_root() / f"trained-{trained_key(spec, shape)}"
    if not (cached / TRAINING_FILE).exists():
        _train_into(spec, shape, cached)
    for item in cached.iterdir():
        shutil.copy2(item, out / item.name)
    meta = json.loads((out / TRAINING_FILE).read_text())
    return ModelInfo(
        path=str(out.resolve()), served_name=spec.name, parameters=meta["parameters"], dtype=spec.dtype,
        bytes_on_disk=sum(f.stat().st_size for f in out.iterdir() if f.is_file()),
        seconds=time.perf_counter() - started, vocab_size=meta["vocab_size"],
        tokenizer_vocab_size=meta["tokenizer_vocab_size"], shape=shape,
    )


def _train_into(spec: ModelSpec, shape: ModelShape, cached: Path) -> None:
    import torch

    from servesweep.platform.training import train_model

    staging = cached.with_name(f"{cached.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tokenizer_size = train_tokenizer(shape.vocab_size, staging, TASK_WORDS)
    config = _llama_config(spec, shape, tokenizer_size)
    config.architectures = ["LlamaForCausalLM"]
    model, measured = train_model(config, staging, spec.training, spec.seed)
    model.to(getattr(torch, spec.dtype)).save_pretrained(staging, safe_serialization=True)
    config.save_pretrained(staging)
    (staging / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1}))
    meta = {**measured, "parameters": int(sum(p.numel() for p in model.parameters())),
            "vocab_size": config.vocab_size, "tokenizer_vocab_size": tokenizer_size,
            "training": spec.training.model_dump(), "seed": spec.seed}
    (staging / TRAINING_FILE).write_text(json.dumps(meta, indent=2))
    shutil.rmtree(cached, ignore_errors=True)
    staging.rename(cached)  # whole or absent: a crash mid-training leaves no half checkpoint in the cache
