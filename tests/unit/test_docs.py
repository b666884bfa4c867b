"""The spec and the lake document themselves: every spec field has a meaning and bounds, the committed
reference docs are what the code generates, and `validate --explain` prints the meanings."""

from __future__ import annotations

import typing

import pytest
import yaml
from typer.testing import CliRunner

from servesweep.cli import app
from servesweep.docs import DOCS, bounds_text, explain, spec_models, stale_docs
from servesweep.lake.schema import SCHEMAS, describe
from servesweep.secrets import WITHHELD
from servesweep.spec import BenchmarkSpec, PipelineParams, parse_spec
from tests.support.paths import REPO

ROOT = REPO
MODELS = [model for _, model in spec_models()] + [PipelineParams]
FIELDS = [(model, name, info) for model in MODELS for name, info in model.model_fields.items()]


def test_every_spec_model_is_reached():
    names = {model.__name__ for model in MODELS}
    assert {"BenchmarkSpec", "ModelShape", "SecretRef", "WorkloadShape", "GKESpec", "NodePoolSpec", "Toleration",
            "HuggingFaceModel", "GCSModel", "RunnerSpec", "PipelineParams"} <= names


@pytest.mark.parametrize(("model", "name", "info"), FIELDS, ids=[f"{m.__name__}.{n}" for m, n, _ in FIELDS])
def test_every_field_says_what_it_means(model, name, info):
    assert info.description and len(info.description) > 10, f"{model.__name__}.{name} has no description"


NUMBERS = [(model, name, info) for model, name, info in FIELDS if model is not PipelineParams
           and typing.get_origin(info.annotation) is None and info.annotation in (int, float)]


@pytest.mark.parametrize(("model", "name", "info"), NUMBERS, ids=[f"{m.__name__}.{n}" for m, n, _ in NUMBERS])
def test_every_number_has_bounds_on_both_sides(model, name, info):
    bounds = bounds_text(info)
    assert ">" in bounds and "<" in bounds, f"{model.__name__}.{name}: bounds {bounds!r}"


def test_pipeline_parameters_name_the_spec_field_they_set():
    assert all(info.description.startswith(("Sets ", "The whole spec"))
               for info in PipelineParams.model_fields.values())


@pytest.mark.parametrize("name", sorted(DOCS))
def test_committed_reference_docs_are_what_the_code_generates(name):
    assert (ROOT / "docs" / name).read_text() == DOCS[name](), f"docs/{name} is stale: run `make docs`"


def test_stale_docs_are_found_and_rewritten(tmp_path):
    assert stale_docs(tmp_path) == sorted(DOCS, key=list(DOCS).index)
    result = CliRunner().invoke(app, ["docs", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert stale_docs(tmp_path) == []
    (tmp_path / "spec.md").write_text("old\n")
    check = CliRunner().invoke(app, ["docs", "--out", str(tmp_path), "--check"])
    assert check.exit_code == 1 and "spec.md" in check.output


def test_metrics_doc_holds_every_column_with_its_definition():
    text = DOCS["metrics.md"]()
    for table in SCHEMAS:
        for column, _, definition in describe(table):
            assert f"| `{column}` |" in text and definition in text


def test_explain_covers_every_leaf_field_and_withholds_env_values():
    data = yaml.safe_load((ROOT / "specs" / "gke.yaml").read_text())
    data["server"]["env"] = {"HF_TOKEN": "hf_secret"}
    spec = parse_spec(data)
    rows = {path: (value, meaning) for path, value, meaning in explain(spec)}
    assert rows["sweep.batch_sizes"][0] == "[1, 4, 16, 64]"
    assert rows["workloads[0].input_tokens"][1].startswith("Prompt length, tokens")
    assert rows["gke.model.bucket"][1].startswith("Bucket name")  # the union member the spec chose
    assert WITHHELD in rows["server.env"][0] and "hf_secret" not in str(rows)
    assert all(meaning for _, meaning in rows.values())
    leaves = {path for path, (value, _) in rows.items() if value}
    assert {f"slo.{name}" for name in BenchmarkSpec.model_fields["slo"].annotation.model_fields} <= leaves


def test_validate_explain_prints_the_meanings(tmp_path):
    result = CliRunner().invoke(app, ["validate", str(ROOT / "specs" / "local.yaml"), "--explain"])
    assert result.exit_code == 0, result.output
    assert "sweep.scrape_interval_s" in result.output and "Seconds between metric scrapes" in result.output
    assert "deployment cc" in result.output  # the plan still follows
