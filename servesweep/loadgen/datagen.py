"""Synthetic prompts of an exact token length, built with the served model's own tokenizer."""

from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path


class PromptError(ValueError):
    pass


class PromptFactory:
    """Makes prompts whose tokenization (special tokens included, as the server counts) is exactly n.

    It samples "stable" vocabulary words: tokens that decode to a word which re-encodes, after a
    space, to that same single token. Joining n such words gives n tokens for word-level and most
    BPE tokenizers; every prompt is re-encoded and trimmed or padded until the count is exact.

    The shortest such words are used: vLLM also bounds a prompt by characters (6 per token of the
    context it allows) before tokenizing it, and rejected 2048-token prompts of 7-character words.
    """

    def __init__(self, tokenizer_dir: str | Path, seed: int = 0) -> None:
        from tokenizers import Tokenizer

        path = Path(tokenizer_dir) / "tokenizer.json"
        if not path.exists():
            raise PromptError(f"no tokenizer.json in {tokenizer_dir}")
        self._tokenizer = Tokenizer.from_file(str(path))
        self._random = random.Random(seed)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=True).ids)

    @cached_property
    def _special_overhead(self) -> int:
        return self.count("")

    @cached_property
    def _words(self) -> list[str]:
        special = set(self._tokenizer.get_added_tokens_decoder())
        candidates = []
        for token_id in range(self._tokenizer.get_vocab_size()):
            if token_id not in special:
                word = self._tokenizer.decode([token_id]).strip()
                if word.isalpha():
                    candidates.append((len(word), token_id, word))
        words = []
        for _, token_id, word in sorted(candidates):  # shortest first (decode is cheap, encode is not)
            if self._tokenizer.encode(" " + word, add_special_tokens=False).ids == [token_id]:
                words.append(word)
                if len(words) >= 4096:
                    break
        if len(words) < 16:
            raise PromptError("the tokenizer has too few single-token words to build prompts")
        return words

    def make(self, tokens: int) -> str:
        """A prompt of exactly `tokens` tokens as the server will count them."""
        body = tokens - self._special_overhead
        if body < 1:
            raise PromptError(f"a prompt needs at least {self._special_overhead + 1} tokens")
        words = self._random.choices(self._words, k=body)
        for _ in range(64):
            text = " ".join(words)
            excess = self.count(text) - tokens
            if excess == 0:
                return text
            if excess > 0:
                del words[-excess:]
            else:
                words.extend(self._random.choices(self._words, k=-excess))
        raise PromptError(f"could not build a prompt of exactly {tokens} tokens with this tokenizer")
