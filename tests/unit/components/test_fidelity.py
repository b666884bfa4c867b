"""Truthful measurement (issue 12) end to end against the zero-work server, sweep -> collect-metrics:
sampling parameters recorded, warm-up and cool-down excluded by rule, repeats with intervals, goodput."""

from __future__ import annotations

import json

import pytest

from components.collect_metrics import collect_metrics
from components.sweep import run_sweep
from servesweep.lake.schema import CI_METRICS, CI_PERCENTILES
from servesweep.loadgen.client import RequestRecord, Sampling, completion_payload
from servesweep.platform.types import Endpoint
from servesweep.spec import BenchmarkSpec, SpecError, parse_spec
from servesweep.sweep_plan import plan_deployments
from tests.support.zero_server import running_zero_server

TTFT_MS, ITL_MS, TOKENS = 5.0, 2.0, 8


@pytest.fixture(scope="module")
def zero_endpoint(tmp_path_factory):
    with running_zero_server(tmp_path_factory, TTFT_MS, ITL_MS) as server:
        yield Endpoint(deployment_id="cc", max_num_seqs=4, base_url=server.base_url, served_name="zero")


def _spec(sweep: dict, workload: dict | None = None, slo: dict | None = None) -> BenchmarkSpec:
    return BenchmarkSpec.model_validate({
        "run_id": "fidelity", "model": {"name": "zero"},
        "workloads": [{"input_tokens": 8, "output_tokens": TOKENS, **(workload or {})}],
        "sweep": {"batch_sizes": [1, 2], "requests_per_point": 8, "warmup_requests": 0, **sweep},
        "slo": slo or {},
    })


def _measure(spec: BenchmarkSpec, endpoint: Endpoint, model, tmp_path) -> tuple[list[dict], list[dict], list]:
    (deployment,) = plan_deployments(spec)
    manifest = run_sweep(spec, deployment, endpoint, model.path, tmp_path / "raw")
    tables = collect_metrics(spec, model, [str(tmp_path / "raw")])
    return tables["points"].to_pylist(), tables["requests"].to_pylist(), manifest.windows


# --- sampling parameters -----------------------------------------------------------------------------------

def test_the_default_request_is_today_s_greedy_exact_length_one():
    assert completion_payload("m", "p", 8) == {
        "model": "m", "prompt": "p", "max_tokens": 8, "stream": True, "min_tokens": 8, "ignore_eos": True,
        "temperature": 0.0, "stream_options": {"include_usage": True}}
    transformers = completion_payload("m", "p", 8, "transformers")
    assert json.loads(transformers.pop("generation_config")) == {"min_new_tokens": 8, "do_sample": False}
    assert transformers == {"model": "m", "prompt": "p", "max_tokens": 8, "stream": True}


def test_a_workload_s_sampling_reaches_the_request():
    sampling = Sampling(temperature=0.7, top_p=0.9, top_k=40, min_tokens=2, ignore_eos=False, stop=("\n\n",),
                        extra=(("seed", 3), ("repetition_penalty", 1.1)))
    payload = completion_payload("m", "p", 8, "vllm", sampling)
    assert {k: payload[k] for k in ("temperature", "top_p", "top_k", "min_tokens", "ignore_eos", "stop", "seed",
                                    "repetition_penalty")} == {
        "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_tokens": 2, "ignore_eos": False, "stop": ["\n\n"],
        "seed": 3, "repetition_penalty": 1.1}
    config = json.loads(completion_payload("m", "p", 8, "transformers", sampling)["generation_config"])
    assert config == {"min_new_tokens": 2, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 40}


def test_a_response_shorter_than_max_tokens_is_ok_when_min_tokens_allows_it():
    record = RequestRecord(0, False, 4, 8, token_times=[1.0, 2.0, 3.0], output_tokens=3, min_output_tokens=2)
    assert record.ok
    short = RequestRecord(0, False, 4, 8, token_times=[1.0], output_tokens=1, min_output_tokens=2)
    assert not short.ok


@pytest.mark.parametrize("workload, message", [
    ({"min_tokens": 9}, "min_tokens 9 exceeds output_tokens 8"),
    ({"extra_body": {"temperature": 1.0}}, "extra_body may not set temperature"),
    ({"top_p": 0.0}, "top_p"),
])
def test_bad_sampling_fields_are_refused(workload, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(_spec({}).model_dump(mode="json") | {
            "workloads": [{"input_tokens": 8, "output_tokens": TOKENS, **workload}]})


def test_sampling_parameters_are_recorded_with_the_point(zero_endpoint, tiny_model, tmp_path):
    workload = {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "stop": ["###"], "extra_body": {"seed": 3}}
    points, requests, _ = _measure(_spec({"batch_sizes": [1], "requests_per_point": 2}, workload), zero_endpoint,
                                   tiny_model, tmp_path)
    (point,) = points
    assert point["status"] == "ok"
    assert (point["temperature"], point["top_p"], point["top_k"], point["stop"]) == (0.7, 0.9, 40, ["###"])
    assert point["min_output_tokens"] == TOKENS and point["ignore_eos"] is True
    assert json.loads(point["extra_request_fields"]) == {"seed": 3}


# --- warm-up and cool-down -----------------------------------------------------------------------------------

def test_a_timed_warm_up_runs_at_the_point_s_load_and_is_excluded(zero_endpoint, tiny_model, tmp_path):
    points, requests, _ = _measure(_spec({"batch_sizes": [2], "warmup_s": 0.2, "warmup_requests": 1}),
                                   zero_endpoint, tiny_model, tmp_path)
    (point,) = points
    warm = sorted((r for r in requests if r["warmup"]), key=lambda r: r["sent_at_s"])
    measured = [r for r in requests if not r["warmup"]]
    assert len(measured) == point["num_requests"] == 8 and point["num_warmup"] == len(warm) > 2
    assert [r["request_index"] for r in warm] == list(range(-len(warm), 0))  # one numbering, in order of issue
    assert sorted(r["request_index"] for r in measured) == list(range(8))
    assert max(r["sent_at_s"] for r in warm) < min(r["sent_at_s"] for r in measured)
    assert min(r["sent_at_s"] for r in measured) - min(r["sent_at_s"] for r in warm) >= 0.2
    assert point["warmup_s"] == 0.2 and point["warmup_requests"] == 1


def test_an_open_loop_s_cool_down_tail_is_sent_and_excluded(zero_endpoint, tiny_model, tmp_path):
    sweep = {"batch_sizes": [1], "load": "open", "request_rates": [100.0], "requests_per_point": 10,
             "warmup_s": 0.05, "cooldown_s": 0.1}
    points, requests, _ = _measure(_spec(sweep), zero_endpoint, tiny_model, tmp_path)
    (point,) = points
    tail = [r for r in requests if r["cooldown"]]
    measured = [r for r in requests if not r["warmup"] and not r["cooldown"]]
    assert point["num_requests"] == len(measured) == 10 and point["num_cooldown"] == len(tail) > 0
    assert min(r["scheduled_at_s"] for r in tail) > max(r["scheduled_at_s"] for r in measured)
    assert max(r["scheduled_at_s"] for r in tail) - max(r["scheduled_at_s"] for r in measured) < 0.1
    assert all(r["ok"] for r in requests) and point["cooldown_s"] == 0.1


# --- repeats and intervals ------------------------------------------------------------------------------------

def test_repeats_run_the_grid_again_and_pool_into_one_row_with_intervals(zero_endpoint, tiny_model, tmp_path):
    spec = _spec({"repeats": 2})
    points, requests, windows = _measure(spec, zero_endpoint, tiny_model, tmp_path)
    assert [(w.point_id, w.repeat) for w in windows] == [
        ("cc-b1-i8-o8", 0), ("cc-b2-i8-o8", 0), ("cc-b1-i8-o8", 1), ("cc-b2-i8-o8", 1)]  # interleaved
    assert sorted({r["repeat"] for r in requests}) == [0, 1]
    for point in points:
        assert point["repeats"] == 2 and point["num_requests"] == 16 and point["p99_few_requests"] is True
        assert isinstance(point["noisy"], bool)
        low, high = point["output_token_throughput_ci_low"], point["output_token_throughput_ci_high"]
        assert low <= point["output_token_throughput"] <= high
        for metric in CI_METRICS:
            for stat in CI_PERCENTILES:
                value = point[f"{metric}_{stat}_ms"]
                assert point[f"{metric}_{stat}_ci_low_ms"] <= value <= point[f"{metric}_{stat}_ci_high_ms"]
    again = collect_metrics(spec, tiny_model, [str(tmp_path / "raw")])["points"].to_pylist()
    assert again == points  # seeded: the same data gives the same intervals


def test_server_cap_repeats_redeploy_in_grid_order():
    spec = _spec({"modes": ["server_max_seqs"], "repeats": 2})
    assert [(d.deployment_id, d.first_repeat) for d in plan_deployments(spec)] == [
        ("sm-b1", 0), ("sm-b2", 0), ("sm-b1-r1", 1), ("sm-b2-r1", 1)]
    # The adaptive search takes repeats too: it re-runs its probes (tests/unit/components/test_adaptive_sweep.py).
    adaptive = parse_spec(_spec({"repeats": 2}).model_dump(mode="json") | {
        "sweep": {"batch_sizes": [2], "requests_per_point": 2, "repeats": 2, "strategy": "adaptive"},
        "slo": {"ttft_p99_ms": 100}})
    assert adaptive.sweep.repeats == 2


# --- goodput ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("limit_ms, attainment", [(10_000.0, 1.0), (0.001, 0.0)])
def test_goodput_counts_the_requests_within_the_per_request_slo(zero_endpoint, tiny_model, tmp_path, limit_ms,
                                                                attainment):
    slo = {"request_ttft_ms": limit_ms, "request_itl_ms": 10_000.0}
    points, requests, _ = _measure(_spec({"batch_sizes": [2]}, slo=slo), zero_endpoint, tiny_model, tmp_path)
    (point,) = points
    assert {r["slo_met"] for r in requests} == {attainment == 1.0}
    assert point["slo_attainment"] == attainment and point["slo_request_ttft_ms"] == limit_ms
    assert point["goodput"] == pytest.approx(attainment * point["request_throughput"])


def test_without_a_per_request_slo_there_is_no_goodput(zero_endpoint, tiny_model, tmp_path):
    points, requests, _ = _measure(_spec({"batch_sizes": [1], "requests_per_point": 2}, slo={"ttft_p99_ms": 100}),
                                   zero_endpoint, tiny_model, tmp_path)
    assert points[0]["goodput"] is None and points[0]["slo_attainment"] is None
    assert {r["slo_met"] for r in requests} == {None}


def _rows(ttfts, repeat: int = 0, tokens: int = 4) -> list[dict]:
    """Back-to-back requests on one slot: each has its TTFT then three 1 ms gaps."""
    rows, now = [], 0.0
    for ttft in ttfts:
        e2e = ttft + 3.0
        rows.append({"repeat": repeat, "sent_at_s": now, "ttft_ms": ttft, "tpot_ms": 1.0, "e2e_ms": e2e,
                     "itl_ms": [1.0, 1.0, 1.0], "output_tokens": tokens})
        now += e2e / 1000.0
    return rows


def test_intervals_cover_the_truth_and_the_noisy_flag_needs_a_real_disagreement():
    import numpy as np

    from servesweep.metrics.intervals import point_intervals, token_bins

    rng = np.random.default_rng(1)
    first, second = (_rows(rng.normal(100.0, 10.0, 400), repeat=r) for r in (0, 1))
    result = point_intervals([first, second], seed=7)
    assert result["ttft_p50_ci_low_ms"] < 100.0 < result["ttft_p50_ci_high_ms"]
    assert result["ttft_p50_ci_high_ms"] - result["ttft_p50_ci_low_ms"] < 5.0
    assert result["noisy"] is False  # two draws of one distribution
    shifted = _rows(rng.normal(130.0, 10.0, 400), repeat=1)
    assert point_intervals([first, shifted], seed=7)["noisy"] is True
    assert point_intervals([first], seed=7)["noisy"] is None  # one repeat: nothing to disagree with
    tokens, width = token_bins(first)
    assert tokens.sum() == pytest.approx(4 * 400) and width > 0


# --- the report: noise, thin p99s, goodput knee, fingerprints ------------------------------------------------

def _ci(throughput: float, spread: float) -> dict:
    return {"output_token_throughput_ci_low": throughput - spread,
            "output_token_throughput_ci_high": throughput + spread}


def test_a_difference_inside_the_intervals_is_no_measurable_difference(tmp_path):
    from servesweep.analysis.models import Question
    from servesweep.analysis.report import build_report, render_markdown
    from servesweep.spec import SLOSpec
    from tests.support.analysis_lake import point, round_price_catalog, write_points

    lake, catalog, slo = str(tmp_path / "lake"), round_price_catalog(tmp_path), SLOSpec(ttft_p99_ms=500)
    # fp8 is 5 % faster at the same price, but each point's throughput is only known to +-10 %.
    rows = [point("bf16", "nvidia-l4", 1, 100.0, 300, 30, **_ci(100.0, 10.0), p99_few_requests=True),
            point("bf16", "nvidia-l4", 2, 180.0, 400, 40, **_ci(180.0, 18.0), p99_few_requests=True),
            point("fp8", "nvidia-l4", 1, 105.0, 300, 30, quantization="fp8", **_ci(105.0, 10.0)),
            point("fp8", "nvidia-l4", 2, 189.0, 400, 40, quantization="fp8", **_ci(189.0, 18.0))]
    write_points(lake, rows)
    report = build_report(lake, [], slo, "nvidia-l4", catalog)
    quantize = next(r for r in report.recommendations if r.question == Question.QUANTIZE)
    assert quantize.answer.startswith("no measurable difference between fp8 and none on nvidia-l4 x1")
    assert any(note.startswith("p99 from fewer than 100 requests") and "batch 2" in note for note in report.notes)
    assert "400 †" in render_markdown(report)  # the thin p99s are marked where they are shown

    write_points(lake, [dict(r, **_ci(r["output_token_throughput"], 1.0)) for r in rows])  # now tight intervals
    quantize = next(r for r in build_report(lake, [], slo, "nvidia-l4", catalog).recommendations
                    if r.question == Question.QUANTIZE)
    assert quantize.answer.startswith("quantize to fp8 on nvidia-l4 x1")


def test_with_a_per_request_slo_the_knee_is_the_most_goodput_within_the_attainment(tmp_path):
    from servesweep.analysis.report import build_report
    from servesweep.spec import SLOSpec
    from tests.support.analysis_lake import point, round_price_catalog, write_points

    lake = str(tmp_path / "lake")
    write_points(lake, [  # batch 8 has the most throughput and goodput, but keeps only 80 % within the SLO
        point("g", "nvidia-l4", 2, 100.0, 300, 30, goodput=0.40, slo_attainment=1.0),
        point("g", "nvidia-l4", 4, 180.0, 350, 35, goodput=0.66, slo_attainment=0.95),
        point("g", "nvidia-l4", 8, 300.0, 400, 40, goodput=0.90, slo_attainment=0.80)])
    (ideal,) = build_report(lake, [], SLOSpec(), "nvidia-l4", round_price_catalog(tmp_path)).measured_ideals()
    assert (ideal.ranked_by, ideal.ideal_batch_size, ideal.goodput) == ("goodput", 4, 0.66)
    assert "highest goodput" in ideal.reason and ideal.max_throughput_batch_size == 8
    batch = next(r for r in build_report(lake, [], SLOSpec(), "nvidia-l4", round_price_catalog(tmp_path))
                 .recommendations if r.question.value == "which batch size?")
    assert "(goodput 0.66 req/s, 95% of requests within the per-request SLO)" in batch.answer
    strict = build_report(lake, [], SLOSpec(min_attainment=0.99), "nvidia-l4", round_price_catalog(tmp_path))
    assert strict.measured_ideals()[0].ideal_batch_size == 2


def test_the_report_prints_each_run_s_fingerprint_and_what_differed(tmp_path):
    from servesweep.analysis.report import build_report, render_markdown
    from servesweep.lake import store
    from tests.support.analysis_lake import point, round_price_catalog, write_points

    lake = str(tmp_path / "lake")
    write_points(lake, [point("a", "nvidia-l4", 1, 100.0, 300, 30), point("b", "nvidia-l4", 1, 110.0, 300, 30),
                        point("old", "nvidia-l4", 1, 90.0, 300, 30)])
    for run_id, driver in (("a", "580.95"), ("b", "590.10")):
        row = {"run_id": run_id, "spec_hash": "f" * 64, "servesweep_version": "0.1.0", "git_commit": "c" * 40,
               "server_kind": "vllm", "server_version": "0.32.0", "gpu_name": "NVIDIA L4", "gpu_count": 1,
               "gpu_driver_version": driver, "cuda_driver_version": "12.8", "python_version": "3.11.7"}
        store.write_run(lake, run_id, {"points": store.read_table(lake, "points", [run_id]),
                                       "runs": store.to_table("runs", [row])})
    report = build_report(lake, [], None, "nvidia-l4", round_price_catalog(tmp_path))
    assert [f.run_id for f in report.fingerprints] == ["a", "b"]
    assert "the runs differ in: gpu_driver_version (table 'Runs')" in report.notes
    assert "no fingerprint for old (written before lake schema v4)" in report.notes
    markdown = render_markdown(report)
    assert "## Runs: what each measured on" in markdown and "| driver | 580.95 | 590.10 |" in markdown
    assert "| spec hash | ffffffffffff | ffffffffffff |" in markdown


def test_charts_draw_the_intervals_they_have_as_error_bars():
    from matplotlib.container import ErrorbarContainer
    from matplotlib.figure import Figure

    from servesweep.analysis.charts import _error_bars

    ax = Figure().subplots()
    drawn = _error_bars(ax, [(1, 100.0, 90.0, 110.0), (2, 180.0, None, None), (4, 300.0, 280.0, 330.0)], "#000")
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert drawn == 2 and len(bars.lines[2][0].get_segments()) == 2  # the point without an interval has none
