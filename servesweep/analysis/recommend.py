"""The four questions, answered from the views' rows the way the GKE serving guide reasons.

Only measured rows answer; predictions are reported beside them. Each function takes one comparison group
(same model, workload shape and source) and returns a Recommendation that says "not covered" with what to run
when the data cannot answer. Where two configurations are compared (GPU, quantization), a difference inside
their 95 % intervals is reported as "no measurable difference", never as a winner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from servesweep.analysis.models import (
    Figure,
    Headline,
    IdealBatch,
    MachineOption,
    PrefillDecode,
    QuantizeVariant,
    Question,
    Recommendation,
    Status,
    VariantAccuracy,
)

T = TypeVar("T")


def group_by(rows: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    groups: dict[str, list[T]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return dict(groups)


def best_value(row: IdealBatch) -> tuple[bool, bool, float, float]:
    """Rank key: meets the SLO, then has a price, then most tokens per dollar, then most throughput."""
    return (row.meets_slo, row.output_tokens_per_dollar is not None, row.output_tokens_per_dollar or 0.0,
            row.output_token_throughput or row.max_output_token_throughput or 0.0)


def cheapest(rows: Sequence[IdealBatch]) -> IdealBatch:
    return max(rows, key=best_value)


def value_interval(row: IdealBatch) -> tuple[float, float] | None:
    """The 95 % interval of what `best_value` ranks by: tokens per dollar when priced, else throughput."""
    if row.cost_per_hour:
        return row.tokens_per_dollar_interval()
    low, high = row.output_token_throughput_ci_low, row.output_token_throughput_ci_high
    return None if low is None or high is None else (low, high)


def indistinguishable(a: IdealBatch, b: IdealBatch) -> bool:
    """Both within the SLO and their intervals overlap: the difference lies inside the noise."""
    first, second = value_interval(a), value_interval(b)
    return (a.meets_slo and b.meets_slo and first is not None and second is not None
            and bool(a.cost_per_hour) == bool(b.cost_per_hour) and first[0] <= second[1] and second[0] <= first[1])


def _tps(value: float | None) -> str:
    """Tokens per second as people read them: 16,407 (not 1.641e+04), 506.2, 29.5."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _money(value: float | None) -> str:
    return "no price" if value is None else f"${value:.3g} per million output tokens"


def _ideal_figures(row: IdealBatch, prefix: str = "") -> list[Figure]:
    return [
        Figure(label=f"{prefix}ideal batch size", value=row.ideal_batch_size),
        Figure(label=f"{prefix}output throughput at ideal batch", value=row.output_token_throughput, unit="tok/s"),
        Figure(label=f"{prefix}p99 TTFT at ideal batch", value=row.ttft_p99_ms, unit="ms"),
        Figure(label=f"{prefix}p99 TPOT at ideal batch", value=row.tpot_p99_ms, unit="ms"),
        Figure(label=f"{prefix}p99 E2E at ideal batch", value=row.e2e_p99_ms, unit="ms"),
        *([Figure(label=f"{prefix}goodput at ideal batch", value=row.goodput, unit="req/s"),
           Figure(label=f"{prefix}requests within the per-request SLO", value=row.slo_attainment, unit="fraction")]
          if row.ranked_by == "goodput" else []),
        Figure(label=f"{prefix}cost at ideal batch", value=row.usd_per_million_output_tokens, unit="$/M tokens"),
        Figure(label=f"{prefix}best output throughput ignoring the SLO", value=row.max_output_token_throughput,
               unit="tok/s"),
        Figure(label=f"{prefix}batch size of that best", value=row.max_throughput_batch_size),
    ]


# --- which batch size? ---------------------------------------------------------------------------------

def recommend_batch_size(scope: str, ideals: Sequence[IdealBatch]) -> Recommendation:
    swept = [row for row in ideals if len(row.batch_sizes_tested) >= 2]
    if not swept:
        tested = ", ".join(f"{row.config_label} at batch {row.batch_sizes_tested[0]}" for row in ideals)
        return Recommendation(
            question=Question.BATCH_SIZE, scope=scope, status=Status.NOT_COVERED,
            answer=f"each config was measured at one batch size only ({tested}); sweep several batch sizes "
                   "(spec sweep.batch_sizes) to find the largest one within the SLO.")
    meeting = [row for row in swept if row.meets_slo]
    if not meeting:
        fastest = cheapest(swept)  # none has a price within the SLO, so this ranks by throughput
        return Recommendation(
            question=Question.BATCH_SIZE, scope=scope, status=Status.SLO_NOT_MET,
            answer=f"no batch size meets the SLO on any config; {fastest.config_label}: {fastest.reason}.",
            figures=_ideal_figures(fastest))
    best = cheapest(meeting)
    return Recommendation(
        question=Question.BATCH_SIZE, scope=scope, status=Status.ANSWERED,
        answer=f"batch {best.ideal_batch_size} on {best.config_label}: {_tps(best.output_token_throughput)} output "
               f"tok/s within the SLO{_goodput_note(best)}, {_money(best.usd_per_million_output_tokens)}"
               f"{_slo_cost_note(best)}. Why: {best.reason}.",
        figures=_ideal_figures(best))


def _goodput_note(row: IdealBatch) -> str:
    if row.ranked_by != "goodput" or row.goodput is None:
        return ""
    return f" (goodput {row.goodput:.4g} req/s, {row.slo_attainment or 0:.0%} of requests within the per-request SLO)"


def _slo_cost_note(row: IdealBatch) -> str:
    """What the SLO costs: the throughput left on the table by not batching further."""
    if row.max_throughput_batch_size == row.ideal_batch_size or not row.max_output_token_throughput:
        return ""
    share = (row.output_token_throughput or 0.0) / row.max_output_token_throughput
    return (f" ({share:.0%} of the {_tps(row.max_output_token_throughput)} tok/s reached at batch "
            f"{row.max_throughput_batch_size} outside the SLO)")


# --- which GPU? ------------------------------------------------------------------------------------------

def recommend_accelerator(scope: str, ideals: Sequence[IdealBatch], baseline: str) -> Recommendation:
    by_placement = {name: cheapest(rows) for name, rows in group_by(ideals, lambda r: r.placement).items()}
    if len(by_placement) < 2:
        (only,) = by_placement.values()
        return Recommendation(
            question=Question.ACCELERATOR, scope=scope, status=Status.NOT_COVERED,
            answer=f"only {only.placement} was measured for this model and workload; run the same spec on other "
                   "accelerators and report the runs together to compare cost per token.",
            figures=_placement_figures([only], baseline))
    ranked = sorted(by_placement.values(), key=best_value, reverse=True)
    figures = _placement_figures(ranked, baseline)
    winner = ranked[0]
    if not winner.meets_slo:
        return Recommendation(
            question=Question.ACCELERATOR, scope=scope, status=Status.SLO_NOT_MET,
            answer="no accelerator meets the SLO: " + "; ".join(f"{r.placement}: {r.reason}" for r in ranked) + ".",
            figures=figures)
    return Recommendation(
        question=Question.ACCELERATOR, scope=scope, status=Status.ANSWERED,
        answer=_accelerator_answer(winner, ranked[1:], baseline), figures=figures)


def _accelerator_answer(winner: IdealBatch, others: Sequence[IdealBatch], baseline: str) -> str:
    runner_up = next((r for r in others if r.meets_slo), None)
    if runner_up is not None and indistinguishable(winner, runner_up):
        return (f"no measurable difference between {winner.placement} and {runner_up.placement}: "
                f"{_money(winner.usd_per_million_output_tokens)} against "
                f"{_money(runner_up.usd_per_million_output_tokens)} within the SLO, inside the 95 % intervals of "
                "their throughput; choose on price, availability or headroom, or measure more (sweep.repeats).")
    text = (f"{winner.placement} ({winner.quantization}, batch {winner.ideal_batch_size}): "
            f"{_money(winner.usd_per_million_output_tokens)} within the SLO")
    if winner.tokens_per_dollar_vs_baseline is not None:
        text += f", {winner.tokens_per_dollar_vs_baseline:.2f}x the tokens per dollar of {baseline}"
    if runner_up is not None:
        text += f"; next: {runner_up.placement} at {_money(runner_up.usd_per_million_output_tokens)}"
    missing = [r.placement for r in others if not r.meets_slo]
    if missing:
        text += f"; {', '.join(missing)} cannot meet the SLO"
    return text + "."


def _placement_figures(rows: Sequence[IdealBatch], baseline: str) -> list[Figure]:
    figures: list[Figure] = []
    for row in rows:
        figures += [
            Figure(label=f"{row.placement}: cost at ideal batch", value=row.usd_per_million_output_tokens,
                   unit="$/M tokens"),
            Figure(label=f"{row.placement}: tokens per dollar vs {baseline}", value=row.tokens_per_dollar_vs_baseline,
                   unit="x"),
            Figure(label=f"{row.placement}: output throughput at ideal batch", value=row.output_token_throughput,
                   unit="tok/s"),
            Figure(label=f"{row.placement}: ideal batch size", value=row.ideal_batch_size),
        ]
    return figures


# --- which machine type? -----------------------------------------------------------------------------------

def _machine_name(option: MachineOption) -> str:
    share = (f"{option.gpus} of its {option.gpus_per_machine} {option.accelerator} GPUs"
             if option.gpus_per_machine and option.gpus_per_machine > option.gpus else
             f"{option.gpus} {option.accelerator} GPU{'s' if option.gpus > 1 else ''}")
    tp = f", tensor parallel {option.gpus}" if option.gpus > 1 else ""
    return f"{option.series} {option.machine_type} ({share}{tp})"


def _machine_cost(option: MachineOption) -> str:
    return (f"{_money(option.usd_per_million_output_tokens)} at batch {option.batch_size}, {option.source} "
            f"({_tps(option.output_token_throughput)} output tok/s)")


def _why_no_cost(option: MachineOption) -> str:
    """Why a machine type that holds the model has no cost per token (a '-' alone says nothing)."""
    if option.usd_per_million_output_tokens is not None:
        return ""
    if option.cost_per_hour is None:
        return " (no price in the catalog)"
    if option.batch_size is None:
        return f" (no batch size {'measured' if option.source == 'measured' else 'predicted'} within the SLO)"
    return " (no throughput)"


def recommend_machine(scope: str, options: Sequence[MachineOption]) -> Recommendation:
    """Cheapest per output token among the machine types that hold the model and meet the SLO (measured or
    predicted, and said which), then the runner-up and the machine types the model does not fit."""
    if not options:
        return Recommendation(
            question=Question.MACHINE, scope=scope, status=Status.NOT_COVERED,
            answer="the planner knows no architecture for this model (model preset), so no machine type can be "
                   "sized; report runs whose spec names a model preset or a config.json.")
    figures = [Figure(label=f"{o.machine_type} x{o.gpus}: {o.source} $/M output tokens{_why_no_cost(o)}",
                      value=o.usd_per_million_output_tokens, unit="$/M tokens") for o in options if o.fits]
    usable = sorted((o for o in options if o.fits and o.meets_slo and o.usd_per_million_output_tokens is not None),
                    key=lambda o: (o.usd_per_million_output_tokens or 0.0, o.source != "measured"))
    unfit = [f"{o.series} ({o.accelerator}: {o.fit_reason})" for o in options if not o.fits]
    unfit_text = f"; the model does not fit {', '.join(unfit)}" if unfit else ""
    if not usable:
        status = Status.SLO_NOT_MET if any(o.fits for o in options) else Status.NOT_COVERED
        return Recommendation(
            question=Question.MACHINE, scope=scope, status=status, figures=figures,
            answer=f"no priced machine type holds the model and meets the SLO{unfit_text}.")
    winner = usable[0]
    text = f"{_machine_name(winner)}: {_machine_cost(winner)}"
    if len(usable) > 1:
        text += f"; next: {_machine_name(usable[1])}: {_machine_cost(usable[1])}"
    if winner.source != "measured":
        text += (f"; the cheapest is a prediction, not a measurement: run the spec on {winner.machine_type} before "
                 "committing")
    return Recommendation(question=Question.MACHINE, scope=scope, status=Status.ANSWERED, figures=figures,
                          answer=text + unfit_text + ".")


# --- quantize? ------------------------------------------------------------------------------------------
# The guide: quantize to save memory and cost; below 8 bits, evaluate accuracy first. At 8 bits or more the
# cheapest variant within the SLO whose accuracy, where measured, is inside the threshold; below 8 bits only
# with an accuracy result inside it; a variant whose accuracy loss passes the threshold is flagged, never chosen.

def recommend_quantization(scope: str, ideals: Sequence[IdealBatch],
                           variants: Sequence[QuantizeVariant] = ()) -> Recommendation:
    quantizations = sorted({str(row.quantization) for row in ideals})
    if len(quantizations) < 2:
        return Recommendation(
            question=Question.QUANTIZE, scope=scope, status=Status.NOT_COVERED,
            answer=f"only quantization {quantizations[0]!r} was measured for this model and workload; run the spec "
                   "again with other variants (spec `variants`: none, w8a8-int8, w4a16...) on the same accelerator "
                   "to compare.")
    comparable = {placement: rows for placement, rows in group_by(ideals, lambda r: r.placement).items()
                  if len({r.quantization for r in rows}) >= 2}
    if not comparable:
        where = ", ".join(f"{r.quantization} on {r.placement}" for r in ideals)
        return Recommendation(
            question=Question.QUANTIZE, scope=scope, status=Status.NOT_COVERED,
            answer=f"the quantizations were measured on different accelerators ({where}); measure them on the same "
                   "accelerator to separate the quantization from the GPU.")
    placement, rows = max(comparable.items(), key=lambda item: best_value(cheapest(item[1])))
    return _quantization_verdict(scope, placement, rows, {v.config_id: v for v in variants})


@dataclass(frozen=True)
class VariantVerdict:
    """Whether a variant may be recommended, whether it is flagged, and why, in words."""

    eligible: bool
    flagged: bool
    why: str


def variant_verdict(row: IdealBatch, variant: QuantizeVariant | None) -> VariantVerdict:
    """The guide's rule for one variant (its cheapest config's ideal batch, and its accuracy and memory)."""
    if variant is not None and variant.accuracy_failed:
        failed = variant.accuracy_failed[0]
        return VariantVerdict(False, True, f"flagged, never recommended: {_accuracy_text(failed)}, past the "
                                           f"threshold {_number(failed.threshold)}")
    if not row.meets_slo:
        return VariantVerdict(False, False, f"misses the SLO ({row.reason})")
    if row.quantization in (None, "none"):
        return VariantVerdict(True, False, "the unquantized baseline")
    passed = variant is not None and variant.accuracy_passed
    measured = ", ".join(_accuracy_text(a) for a in variant.accuracy if a.passed is not None) if passed and variant \
        else ""
    if variant is not None and variant.weight_bits < 8 and not passed:
        return VariantVerdict(False, False, "weights below 8 bits and no accuracy result inside the threshold: "
                                            "not recommended until accuracy is measured")
    if passed:
        return VariantVerdict(True, False, f"accuracy inside the threshold ({measured})")
    return VariantVerdict(True, False, "8-bit or wider weights, so eligible without an accuracy result (none "
                                       "measured)")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _accuracy_text(row: VariantAccuracy) -> str:
    interval = f" (95 % CI {_number(row.delta_low)} to {_number(row.delta_high)})" \
        if row.delta_low is not None and row.delta_high is not None else ""
    return f"{row.metric} on {row.task} {_number(row.value)} against {_number(row.baseline_value)}, delta " \
           f"{_number(row.delta)}{interval}"


def _memory_text(variant: QuantizeVariant | None) -> str:
    if variant is None or variant.weight_gb is None:
        return "weights not sized"
    gpus = f", {variant.gpus_needed} GPU(s) needed" if variant.gpus_needed is not None else ""
    return f"weights {variant.weight_gb:.3g} GB ({variant.weight_source}){gpus}"


def _quantization_verdict(scope: str, placement: str, rows: Sequence[IdealBatch],
                          variants: dict[str, QuantizeVariant]) -> Recommendation:
    per_quantization = {q: cheapest(group) for q, group in group_by(rows, lambda r: str(r.quantization)).items()}
    ranked = sorted(per_quantization.values(), key=best_value, reverse=True)
    chosen = {str(row.quantization): variants.get(row.config_id) for row in ranked}
    figures = [figure for row in ranked for figure in _quantization_figures(row, chosen[str(row.quantization)])]
    if not ranked[0].meets_slo:
        return Recommendation(
            question=Question.QUANTIZE, scope=scope, status=Status.SLO_NOT_MET,
            answer=f"no quantization meets the SLO on {placement}: "
                   + "; ".join(f"{r.quantization}: {r.reason}" for r in ranked) + ".", figures=figures)
    verdicts = {str(row.quantization): variant_verdict(row, chosen[str(row.quantization)]) for row in ranked}
    eligible = [row for row in ranked if verdicts[str(row.quantization)].eligible]
    costs = {str(row.quantization): row.usd_per_million_output_tokens for row in ranked}
    others = "; ".join(f"{q}: {_money(costs[q])}, {_memory_text(chosen[q])}, {verdict.why}"
                       for q, verdict in verdicts.items() if not eligible or q != eligible[0].quantization)
    unmeasured = "" if any(v and v.accuracy for v in chosen.values()) else \
        " No accuracy data for these variants: run the accuracy step before serving a quantized one."
    if not eligible:
        return Recommendation(question=Question.QUANTIZE, scope=scope, status=Status.NOT_COVERED, figures=figures,
                              answer=f"no variant can be recommended on {placement}: {others}.{unmeasured}")
    winner = eligible[0]
    answer = _winner_text(winner, ranked, placement, chosen)
    return Recommendation(question=Question.QUANTIZE, scope=scope, status=Status.ANSWERED, figures=figures,
                          answer=f"{answer}{'; ' + others if others else ''}.{unmeasured}")


def _winner_text(winner: IdealBatch, ranked: Sequence[IdealBatch], placement: str,
                 chosen: dict[str, QuantizeVariant | None]) -> str:
    """The recommended variant against the baseline (or, for the baseline, the next variant within the SLO)."""
    mine = chosen[str(winner.quantization)]
    quantized = winner.quantization not in (None, "none")
    baseline = next((r for r in ranked if r.quantization in (None, "none")), None)
    other = baseline if quantized and baseline is not None else next((r for r in ranked if r is not winner), None)
    if quantized and baseline is not None and indistinguishable(winner, baseline):
        return (f"no measurable difference between {winner.quantization} and none on {placement}: "
                f"{_money(winner.usd_per_million_output_tokens)} against "
                f"{_money(baseline.usd_per_million_output_tokens)}, inside the 95 % intervals of their throughput; "
                f"quantizing buys nothing measurable here but memory ({winner.quantization}: {_memory_text(mine)})")
    verb = f"quantize to {winner.quantization}" if quantized else "do not quantize"
    mine_cost = f"{winner.quantization} at its ideal batch {winner.ideal_batch_size}: " \
        f"{_money(winner.usd_per_million_output_tokens)}"
    if other is None:
        comparison = mine_cost
    elif other.meets_slo:
        comparison = (f"{mine_cost}, against {_money(other.usd_per_million_output_tokens)} for {other.quantization} "
                      f"at its ideal batch {other.ideal_batch_size}")
    else:
        comparison = f"only {winner.quantization} meets the SLO ({other.quantization}: {other.reason})"
    why = f", {variant_verdict(winner, mine).why}" if quantized else ""
    return f"{verb} on {placement}: {comparison}; {winner.quantization}: {_memory_text(mine)}{why}"


def _quantization_figures(row: IdealBatch, variant: QuantizeVariant | None) -> list[Figure]:
    figures = [
        Figure(label=f"{row.quantization}: cost at ideal batch", value=row.usd_per_million_output_tokens,
               unit="$/M tokens"),
        Figure(label=f"{row.quantization}: output throughput at ideal batch", value=row.output_token_throughput,
               unit="tok/s"),
        Figure(label=f"{row.quantization}: ideal batch size", value=row.ideal_batch_size),
    ]
    if variant is not None:
        figures += [Figure(label=f"{row.quantization}: weight memory ({variant.weight_source})",
                           value=variant.weight_gb, unit="GB"),
                    Figure(label=f"{row.quantization}: GPUs needed", value=variant.gpus_needed)]
        figures += [Figure(label=f"{row.quantization}: {a.metric} delta on {a.task}", value=a.delta)
                    for a in variant.accuracy]
    return figures


# --- prefill- or decode-heavy? --------------------------------------------------------------------------

_ADVICE = {
    "decode-heavy": "generating tokens dominates, and decode is memory-bandwidth bound: favour HBM bandwidth per "
                    "dollar and larger batches; p99 TPOT is the SLO to watch",
    "prefill-heavy": "reading the prompt dominates, and prefill is compute bound: favour FLOPS per dollar, watch p99 "
                     "TTFT (chunked prefill, prefix caching); batching helps less",
}


def recommend_workload(scope: str, rows: Sequence[PrefillDecode]) -> Recommendation:
    known = [row for row in rows if row.workload_balance is not None]
    if not known:
        return Recommendation(
            question=Question.WORKLOAD, scope=scope, status=Status.NOT_COVERED,
            answer="the points lack mean TTFT and E2E latency, so the time split cannot be computed.")
    figures = [figure for row in known for figure in _workload_figures(row)]
    balances = sorted({str(row.workload_balance) for row in known})
    if len(balances) > 1:
        split = "; ".join(f"{row.config_label}: {row.workload_balance} ({row.ttft_share_of_e2e:.0%} in TTFT)"
                          for row in known)
        answer = f"it depends on the accelerator: {split}."
    else:
        first = known[0]
        # Each share with the batch and config it was measured at: configs of a group differ in their lowest batch.
        shares = "; ".join(f"{row.ttft_share_of_e2e:.1%} at batch {row.low_batch_size}"
                           + (f" ({row.config_label})" if len(known) > 1 else "") for row in known)
        answer = (f"{balances[0]}: of a request's end-to-end time, the share spent before the first token is "
                  f"{shares} ({first.input_tokens} prompt / {first.output_tokens} output tokens); "
                  f"{_ADVICE[balances[0]]}.")
    return Recommendation(question=Question.WORKLOAD, scope=scope, status=Status.ANSWERED, answer=answer,
                          figures=figures)


def _workload_figures(row: PrefillDecode) -> list[Figure]:
    name = f"{row.accelerator} x{row.accelerator_count or 1}"
    return [
        Figure(label=f"{name}: share of E2E time in TTFT", value=row.ttft_share_of_e2e, unit="fraction"),
        Figure(label=f"{name}: prefill speed (batch {row.low_batch_size})", value=row.prefill_tokens_per_s,
               unit="tok/s"),
        Figure(label=f"{name}: decode speed per sequence (batch {row.low_batch_size})", value=row.decode_tokens_per_s,
               unit="tok/s"),
        Figure(label=f"{name}: decode speed, all sequences (batch {row.max_batch_size})",
               value=row.decode_tokens_per_s_all_sequences_max_batch, unit="tok/s"),
    ]


# --- all questions, and the headline ----------------------------------------------------------------------

def recommend(ideals: Sequence[IdealBatch], balance: Sequence[PrefillDecode], baseline: str,
              machines: Sequence[MachineOption] = (),
              variants: Sequence[QuantizeVariant] = ()) -> list[Recommendation]:
    """Every question for every measured comparison group; a single 'not covered' per question without data."""
    measured = [row for row in ideals if row.source == "measured"]
    if not measured:
        return [Recommendation(question=q, scope="all runs", status=Status.NOT_COVERED,
                               answer="no measured point with status ok or partial in these runs.")
                for q in Question]
    workload_rows = group_by([row for row in balance if row.source == "measured"], lambda r: r.comparison_group)
    recommendations: list[Recommendation] = []
    machine_rows = group_by(machines, lambda r: r.comparison_group)
    for scope, rows in group_by(measured, lambda r: r.comparison_group).items():
        recommendations += [
            recommend_quantization(scope, rows, [v for v in variants if v.comparison_group == scope]),
            recommend_machine(scope, machine_rows.get(scope, [])),
            recommend_accelerator(scope, rows, baseline),
            recommend_batch_size(scope, rows),
            recommend_workload(scope, workload_rows.get(scope, [])),
        ]
    return recommendations


def headline(ideals: Sequence[IdealBatch]) -> Headline:
    """The answer per comparison group (a model serving one workload): configs of different models or
    workloads are never ranked against each other. The fields describe the first group's answer."""
    answers = group_headlines(ideals)
    if not answers:
        return Headline(meets_slo=False, summary="no measured point with status ok or partial in these runs")
    if len(answers) == 1:
        return next(iter(answers.values()))
    summary = "; ".join(f"{scope}: {answer.summary}" for scope, answer in answers.items())
    return next(iter(answers.values())).model_copy(update={"summary": summary})


def group_headlines(ideals: Sequence[IdealBatch]) -> dict[str, Headline]:
    """The headline of each measured comparison group, by group name (sorted): each from its group's rows alone."""
    groups = group_by([row for row in ideals if row.source == "measured"], lambda r: r.comparison_group)
    return {scope: _group_headline(rows) for scope, rows in sorted(groups.items())}


def _group_headline(measured: Sequence[IdealBatch]) -> Headline:
    best = cheapest(measured)
    if not best.meets_slo:
        fastest = max(measured, key=lambda r: r.max_output_token_throughput or 0.0)
        return Headline(meets_slo=False, config_label=fastest.config_label,
                        max_output_token_throughput=fastest.max_output_token_throughput,
                        summary=f"no measured config meets the SLO; the fastest, {fastest.config_label}, reaches "
                                f"{_tps(fastest.max_output_token_throughput or 0)} output tok/s at batch "
                                f"{fastest.max_throughput_batch_size} ({fastest.reason})")
    return Headline(
        meets_slo=True, config_label=best.config_label, ideal_batch_size=best.ideal_batch_size,
        output_token_throughput=best.output_token_throughput, output_tokens_per_dollar=best.output_tokens_per_dollar,
        usd_per_million_output_tokens=best.usd_per_million_output_tokens,
        max_output_token_throughput=best.max_output_token_throughput,
        summary=f"{best.config_label} at batch {best.ideal_batch_size}: {_tps(best.output_token_throughput)} output "
                f"tok/s within the SLO, {_money(best.usd_per_million_output_tokens)}")
