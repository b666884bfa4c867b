"""Accuracy of a served variant: perplexity from prompt log-probabilities, exact match, and the comparison with
the bf16 baseline of the same model (delta, its interval, pass/fail).

Perplexity is exp of the mean negative log-likelihood per token over the held-out texts, every token but
the first of each text (the first has no context: the completions API returns no log-probability for it).
Intervals are seeded bootstraps over texts (perplexity) or a normal interval over problems (exact match),
and the delta's interval treats the two runs as independent samples of the same held-out set.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pydantic import BaseModel

Z95 = 1.959963984540054


class Interval(BaseModel):
    value: float
    low: float
    high: float


def perplexity(token_logprobs: Sequence[Sequence[float | None]]) -> float:
    """exp(-mean log p) over every token with a log-probability (None, the first token's, is skipped)."""
    values = [lp for text in token_logprobs for lp in text if lp is not None]
    if not values:
        raise ValueError("no token log-probabilities to compute a perplexity from")
    return math.exp(-sum(values) / len(values))


def perplexity_interval(token_logprobs: Sequence[Sequence[float | None]], draws: int = 1000,
                        seed: int = 0) -> Interval:
    """Perplexity with a 95 % bootstrap interval over texts (resampling whole texts, token-weighted)."""
    texts = [[lp for lp in text if lp is not None] for text in token_logprobs]
    texts = [t for t in texts if t]
    rng = random.Random(seed)
    sums = [sum(t) for t in texts]
    counts = [len(t) for t in texts]
    stats = []
    for _ in range(draws):
        picks = [rng.randrange(len(texts)) for _ in texts]
        stats.append(math.exp(-sum(sums[i] for i in picks) / sum(counts[i] for i in picks)))
    stats.sort()
    return Interval(value=perplexity(texts), low=stats[int(0.025 * draws)], high=stats[int(0.975 * draws) - 1])


def proportion_interval(correct: int, total: int) -> Interval:
    """Share correct with a 95 % Wilson interval."""
    if total <= 0:
        raise ValueError("no problems scored")
    p = correct / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    return Interval(value=p, low=max(0.0, centre - half), high=min(1.0, centre + half))


def difference_interval(variant: Interval, baseline: Interval) -> Interval:
    """variant - baseline with a 95 % interval from the two intervals' half-widths (independent samples)."""
    half_v = (variant.high - variant.low) / 2
    half_b = (baseline.high - baseline.low) / 2
    half = math.sqrt(half_v**2 + half_b**2)
    delta = variant.value - baseline.value
    return Interval(value=delta, low=delta - half, high=delta + half)


class Verdict(BaseModel):
    """A variant's accuracy against its baseline: deltas, intervals and whether they stay inside the threshold."""

    accuracy_delta: Interval
    perplexity_ratio_delta: Interval  # (variant / baseline) - 1
    passed: bool
    reason: str


def judge(variant_accuracy: Interval, baseline_accuracy: Interval, variant_ppl: Interval, baseline_ppl: Interval,
          max_accuracy_drop: float, max_perplexity_increase: float) -> Verdict:
    """Pass when neither the exact-match drop nor the relative perplexity increase exceeds its threshold (point
    estimates: a variant whose measured delta is past the threshold is flagged, whatever its interval)."""
    accuracy = difference_interval(variant_accuracy, baseline_accuracy)
    ratio = Interval(value=variant_ppl.value / baseline_ppl.value - 1, low=variant_ppl.low / baseline_ppl.high - 1,
                     high=variant_ppl.high / baseline_ppl.low - 1)
    problems = []
    if -accuracy.value > max_accuracy_drop:
        problems.append(f"exact match drops {-accuracy.value:.3f} (> {max_accuracy_drop:.3f})")
    if ratio.value > max_perplexity_increase:
        problems.append(f"perplexity rises {ratio.value:.1%} (> {max_perplexity_increase:.1%})")
    return Verdict(accuracy_delta=accuracy, perplexity_ratio_delta=ratio, passed=not problems,
                   reason="; ".join(problems) or "within the thresholds")
