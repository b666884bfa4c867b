"""Perplexity against a hand-computed case, intervals, and the threshold flag."""

from __future__ import annotations

import math

import pytest

from servesweep.accuracy import Interval, judge, perplexity, perplexity_interval, proportion_interval


def test_perplexity_by_hand() -> None:
    # two texts; the first token of each has no log-probability. Tokens: p = 1/2, 1/4 | 1/8.
    logprobs = [[None, math.log(0.5), math.log(0.25)], [None, math.log(0.125)]]
    # mean NLL = (ln 2 + ln 4 + ln 8) / 3 = 2 ln 2 -> perplexity 4
    assert perplexity(logprobs) == pytest.approx(4.0)


def test_perplexity_of_a_certain_model_is_one() -> None:
    assert perplexity([[None, 0.0, 0.0]]) == pytest.approx(1.0)


def test_no_logprobs_is_an_error() -> None:
    with pytest.raises(ValueError, match="no token log-probabilities"):
        perplexity([[None]])


def test_bootstrap_interval_brackets_the_estimate() -> None:
    logprobs = [[None, math.log(0.5 + i / 40)] for i in range(20)]
    interval = perplexity_interval(logprobs, draws=200)
    assert interval.low <= interval.value <= interval.high
    assert perplexity_interval(logprobs, draws=200) == interval  # seeded


def test_wilson_interval() -> None:
    interval = proportion_interval(80, 100)
    assert interval.value == 0.8
    assert interval.low == pytest.approx(0.7112, abs=1e-3) and interval.high == pytest.approx(0.8666, abs=1e-3)


def _ppl(value: float) -> Interval:
    return Interval(value=value, low=value * 0.98, high=value * 1.02)


def test_a_drop_past_the_threshold_is_flagged() -> None:
    baseline, variant = proportion_interval(90, 100), proportion_interval(80, 100)
    verdict = judge(variant, baseline, _ppl(2.0), _ppl(2.0), max_accuracy_drop=0.02, max_perplexity_increase=0.05)
    assert not verdict.passed and "exact match drops 0.100" in verdict.reason
    assert verdict.accuracy_delta.value == pytest.approx(-0.1)
    assert verdict.accuracy_delta.low < -0.1 < verdict.accuracy_delta.high


def test_perplexity_rise_past_the_threshold_is_flagged() -> None:
    same = proportion_interval(90, 100)
    verdict = judge(same, same, _ppl(2.2), _ppl(2.0), max_accuracy_drop=0.02, max_perplexity_increase=0.05)
    assert not verdict.passed and "perplexity rises 10.0%" in verdict.reason


def test_inside_the_thresholds_passes() -> None:
    verdict = judge(proportion_interval(89, 100), proportion_interval(90, 100), _ppl(2.04), _ppl(2.0),
                    max_accuracy_drop=0.02, max_perplexity_increase=0.05)
    assert verdict.passed and verdict.reason == "within the thresholds"
