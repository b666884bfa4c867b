"""Load shapes without a server: gamma burstiness, ramps, trace files, the stages' plan."""

from __future__ import annotations

import statistics

import pytest

from servesweep.loadgen.runner import LoadPlan, clock_time, open_schedule
from servesweep.loadgen.trace import TraceError, read_trace
from servesweep.spec import SpecError, TraceSpec, parse_spec
from servesweep.sweep_plan import plan_deployments, requests_for


def _plan(**fields) -> LoadPlan:
    return LoadPlan(base_url="http://127.0.0.1:1", model="m", input_tokens=4, output_tokens=4, **fields)


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_gamma_arrivals_keep_the_rate_and_burstiness_sets_their_spread():
    bursty = open_schedule(_plan(rate=10.0, num_requests=4000, arrival="gamma", burstiness=0.25, seed=1))[0]
    regular = open_schedule(_plan(rate=10.0, num_requests=4000, arrival="gamma", burstiness=4.0, seed=1))[0]
    for times in (bursty, regular):
        assert statistics.mean(_gaps(times)) == pytest.approx(0.1, rel=0.1)
    cv = [statistics.stdev(_gaps(t)) / statistics.mean(_gaps(t)) for t in (bursty, regular)]
    assert cv[0] == pytest.approx(2.0, rel=0.15) and cv[1] == pytest.approx(0.5, rel=0.15)  # 1/sqrt(shape)


def test_plain_poisson_is_the_stream_it_always_was():
    from servesweep.loadgen.runner import poisson_schedule

    assert open_schedule(_plan(rate=5.0, num_requests=50, seed=3))[0] == poisson_schedule(5.0, 50, 3)


def test_a_ramp_bends_the_spacing_to_the_rate_of_each_moment():
    times = open_schedule(_plan(rate=2.0, rate_end=20.0, duration_s=20.0, seed=2))[0]
    first, last = [t for t in times if t < 5], [t for t in times if t >= 15]
    assert len(first) == pytest.approx(5 * (2 + 6.5) / 2, rel=0.35)  # rate rises 2 -> 6.5 over the first 5 s
    assert len(last) == pytest.approx(5 * (15.5 + 20) / 2, rel=0.2)
    assert clock_time(0.0, 2.0, 20.0, 20.0) == 0.0 and clock_time(220.0, 2.0, 20.0, 20.0) == pytest.approx(20.0)
    assert clock_time(240.0, 2.0, 20.0, 20.0) == pytest.approx(21.0)  # past the ramp: its end rate


def test_a_trace_file_is_replayed_relative_to_its_first_arrival(tmp_path):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"timestamp": 100.5, "input_tokens": 12}\n{"timestamp": 100.0, "output_tokens": 3}\n'
                     '{"timestamp": 102.0}\n')
    trace = read_trace(TraceSpec(path=str(jsonl), time_scale=0.5))
    assert trace.offsets == [0.0, 0.25, 1.0] and trace.lengths == [(None, 3), (12, None), (None, None)]
    csv = tmp_path / "t.csv"
    csv.write_text("timestamp,input_tokens,output_tokens\n0,5,6\n0.2,7,8\n")
    assert read_trace(TraceSpec(path=str(csv), max_requests=1)).lengths == [(5, 6)]
    csv.write_text("timestamp\nsoon\n")
    with pytest.raises(TraceError, match="timestamp must be a number"):
        read_trace(TraceSpec(path=str(csv)))
    plan = _plan(schedule=trace.offsets, lengths=[(4, 4)] * 3)
    assert open_schedule(plan)[0] == [0.0, 0.25, 1.0]


def test_stages_become_points_in_order_on_one_deployment():
    spec = parse_spec({"workloads": [{"input_tokens": 16, "output_tokens": 8}], "sweep": {
        "batch_sizes": [4], "stages": [{"concurrency": 2, "duration_s": 5}, {"rate": 1.0, "ramp_to_rate": 8.0,
                                                                             "duration_s": 10}]}})
    [deployment] = plan_deployments(spec)
    assert [(p.point_id, p.load_kind, p.batch_size, p.duration_s) for p in deployment.points] == [
        ("cc-s0-i16-o8", "closed", 2, 5.0), ("cc-s1-i16-o8", "open", 4, 10.0)]
    assert deployment.max_num_seqs == 4 and {requests_for(spec, p) for p in deployment.points} == {None}


def test_stage_rules():
    with pytest.raises(SpecError, match="either a rate .open loop. or a concurrency"):
        parse_spec({"sweep": {"stages": [{"duration_s": 1}]}})
    with pytest.raises(SpecError, match="client_concurrency mode"):
        parse_spec({"sweep": {"modes": ["server_max_seqs"], "stages": [{"duration_s": 1, "concurrency": 1}]}})
