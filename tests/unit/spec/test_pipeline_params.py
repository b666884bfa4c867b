"""Typed pipeline parameters (the KFP UI's fields) over spec_yaml: sampling and lengths per workload."""

import yaml

from servesweep.spec import BenchmarkSpec, public_dump, spec_from_params, spec_to_params


def _base() -> BenchmarkSpec:
    return BenchmarkSpec.model_validate({"workloads": [
        {"name": "short", "input_tokens": 16, "output_tokens": 8, "stop": ["\n"]},
        {"name": "long", "input_tokens": 64, "output_tokens": 32, "top_k": 5},
    ]})


def _params(**changes) -> dict:
    params = spec_to_params(_base()).model_dump()
    params["spec_yaml"] = yaml.safe_dump(public_dump(_base()), sort_keys=False)
    return params | changes


def test_unchanged_parameters_give_back_the_spec():
    assert spec_from_params(_params()).workloads == _base().workloads


def test_a_sampling_edit_sets_every_workload_and_keeps_their_other_fields():
    spec = spec_from_params(_params(temperature=0.7, top_p=0.9, ignore_eos=False, min_tokens=2))
    assert [(w.name, w.temperature, w.top_p, w.ignore_eos, w.min_tokens) for w in spec.workloads] == [
        ("short", 0.7, 0.9, False, 2), ("long", 0.7, 0.9, False, 2)]
    assert spec.workloads[1].top_k == 5 and spec.workloads[0].stop == ["\n"]  # not edited: as in spec_yaml


def test_a_length_edit_sets_the_first_workload_only():
    spec = spec_from_params(_params(input_tokens=128))
    assert [(w.name, w.input_tokens, w.output_tokens) for w in spec.workloads] == [("short", 128, 8),
                                                                                  ("long", 64, 32)]


def test_without_spec_yaml_the_typed_parameters_are_the_spec_and_sentinels_mean_unset():
    params = spec_to_params(BenchmarkSpec()).model_dump() | {"spec_yaml": "", "stop": ["###"], "top_k": 0}
    (workload,) = spec_from_params(params).workloads
    assert workload.stop == ["###"] and workload.top_k is None and workload.top_p is None
    assert workload.min_tokens is None
