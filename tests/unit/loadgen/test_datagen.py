import pytest
from tokenizers import Tokenizer

from servesweep.loadgen.datagen import PromptError, PromptFactory


def test_prompts_have_the_exact_token_count(tiny_model):
    factory = PromptFactory(tiny_model.path, seed=1)
    tokenizer = Tokenizer.from_file(f"{tiny_model.path}/tokenizer.json")
    for length in (2, 3, 17, 128, 500):
        prompt = factory.make(length)
        assert len(tokenizer.encode(prompt).ids) == length  # BOS included, as the server counts
    assert factory.make(64) != factory.make(64)  # distinct prompts: no accidental prefix-cache hits


def test_too_short_and_missing_tokenizer(tiny_model, tmp_path):
    with pytest.raises(PromptError, match="at least 2"):
        PromptFactory(tiny_model.path).make(1)
    with pytest.raises(PromptError, match="no tokenizer.json"):
        PromptFactory(tmp_path)


def test_generated_checkpoint_is_described(tiny_model):
    # tiny: 2 layers, hidden 128, intermediate 256, 2 heads (1 KV head, head_dim 64), vocab 2048, untied.
    embed = lm_head = 2048 * 128
    per_layer = 128 * 128 * 2 + 128 * 64 * 2 + 3 * 128 * 256 + 2 * 128  # q,o + k,v + mlp + 2 norms
    assert tiny_model.parameters == embed + lm_head + 2 * per_layer + 128
    assert tiny_model.tokenizer_vocab_size == 2048 and tiny_model.dtype == "bfloat16"
    assert tiny_model.bytes_on_disk > tiny_model.parameters * 2


def test_prompts_use_short_words_so_vllm_character_bound_holds(tmp_path):
    # vLLM rejects a prompt longer than 6 characters per token of its input limit before tokenizing;
    # a Llama-3-sized word vocabulary (128k words) reaches 7 characters per word.
    from servesweep.loadgen.datagen import PromptFactory
    from servesweep.platform.checkpoint import train_tokenizer

    train_tokenizer(128256, tmp_path)
    factory = PromptFactory(tmp_path, seed=3)
    prompt = factory.make(2048)
    assert factory.count(prompt) == 2048
    assert len(prompt) / 2048 < 5.5
