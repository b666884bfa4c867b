"""Train the small Llama on the synthetic addition task (servesweep.synthetic_task), on CPU, deterministically.

Random weights score the same in every precision; a model that has learned something loses some of it when
quantized, which is what the accuracy step measures. The trainer is plain PyTorch over transformers' Llama:
seeded data order and initialisation, one thread count, so the same parameters give the same weights. The
result is cached by the load-model step (servesweep.platform.checkpoint) under a key of its parameters.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from servesweep.spec import TrainingSpec
from servesweep.synthetic_task import heldout_examples, train_examples


def encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in texts]


def train_model(config: Any, tokenizer_dir: Path, training: TrainingSpec, seed: int) -> tuple[Any, dict[str, Any]]:
    """A LlamaForCausalLM of `config` trained on addition; returns it (float32) and what training measured."""
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    started = time.perf_counter()
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one arithmetic order on any machine (and the fastest for this size on shared cores)
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
        model = LlamaForCausalLM(config).float()
        model.train()
        examples = train_examples(training.digits, training.steps * training.batch_size, seed)
        data = torch.tensor(encode(tokenizer, [e.text for e in examples]))
        # The loss is the answer's alone: the operands are uniform noise, and fitting them stalls the answer.
        prompt_len = len(tokenizer(examples[0].prompt)["input_ids"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate, weight_decay=0.01,
                                      betas=(0.9, 0.98))
        warmup = max(1, training.steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.05, 1 - step / training.steps))
        loss_value = float("nan")
        for step in range(training.steps):
            batch = data[step * training.batch_size:(step + 1) * training.batch_size]
            labels = batch.clone()
            labels[:, :prompt_len] = -100
            loss = model(input_ids=batch, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            loss_value = float(loss.detach())
        model.eval()
        accuracy = exact_match(model, tokenizer, training.digits)
    finally:
        torch.set_num_threads(threads)
    return model, {"train_loss": loss_value, "heldout_exact_match": accuracy,
                   "train_seconds": time.perf_counter() - started}


def exact_match(model: Any, tokenizer: Any, digits: int, count: int = 200) -> float:
    """Share of held-out problems the model answers exactly (greedy), computed in-process in float32."""
    import torch

    examples = heldout_examples(digits, count)
    prompts = torch.tensor([tokenizer(e.prompt)["input_ids"] for e in examples])
    answer_len = digits + 1
    with torch.no_grad():
        out = model.generate(prompts, max_new_tokens=answer_len, do_sample=False, pad_token_id=1,
                             attention_mask=torch.ones_like(prompts))
    answers = tokenizer.batch_decode(out[:, prompts.shape[1]:], skip_special_tokens=True)
    correct = sum(a.strip() == e.answer for a, e in zip(answers, examples, strict=True))
    return float(correct) / len(examples)
