"""Load model on GKE against a real GCS emulator: the random-weight checkpoint is uploaded once, the
pipeline keeps only its small files, and an existing checkpoint is described from its config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.cloud import storage

from components.load_model import MODEL_INFO_FILE, prepare_model, read_model_info
from servesweep.gke_spec import GCSModel
from servesweep.platform.gke.checkpoints import (
    MARKER,
    describe_checkpoint,
    fetch_gcs_checkpoint,
    publish_random_checkpoint,
)
from servesweep.spec import BenchmarkSpec, ModelSpec

WEIGHTS = "model.safetensors"


@pytest.fixture
def bucket(gcs_emulator) -> storage.Bucket:
    client = storage.Client()
    name = "models"
    if client.lookup_bucket(name) is None:
        client.create_bucket(name)
    yield client.bucket(name)
    for blob in client.list_blobs(name):
        blob.delete()


def names(bucket: storage.Bucket, prefix: str) -> set[str]:
    return {blob.name.removeprefix(prefix + "/") for blob in bucket.client.list_blobs(bucket.name, prefix=prefix)}


def test_random_weights_are_uploaded_and_only_small_files_kept(bucket, tmp_path):
    source = GCSModel(bucket="models", path="random/tiny")
    info = publish_random_checkpoint(ModelSpec(), source, tmp_path / "out")
    assert {WEIGHTS, "config.json", "tokenizer.json", MARKER} <= names(bucket, "random/tiny")
    kept = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"config.json", "tokenizer.json"} <= kept and WEIGHTS not in kept
    assert info.path == "gs://models/random/tiny"
    assert info.parameters > 0 and info.bytes_on_disk > 0


def test_a_published_checkpoint_is_reused_for_the_same_weights(bucket, tmp_path):
    source = GCSModel(bucket="models", path="random/tiny")
    first = publish_random_checkpoint(ModelSpec(), source, tmp_path / "first")
    generation = bucket.get_blob(f"random/tiny/{WEIGHTS}").generation
    renamed = publish_random_checkpoint(ModelSpec(name="other-name"), source, tmp_path / "second")
    assert bucket.get_blob(f"random/tiny/{WEIGHTS}").generation == generation  # not uploaded again
    assert renamed.parameters == first.parameters and renamed.served_name == "other-name"
    assert (tmp_path / "second" / "tokenizer.json").is_file()
    publish_random_checkpoint(ModelSpec(seed=1), source, tmp_path / "third")  # other weights: written anew
    assert bucket.get_blob(f"random/tiny/{WEIGHTS}").generation != generation


def test_an_existing_checkpoint_is_read_not_written(bucket, tmp_path):
    source = GCSModel(bucket="models", path="random/tiny")
    published = publish_random_checkpoint(ModelSpec(), source, tmp_path / "published")
    existing = source.model_copy(update={"random_weights": False})
    info = fetch_gcs_checkpoint(ModelSpec(), existing, tmp_path / "fetched")
    assert info.parameters == published.parameters
    assert info.shape == published.shape and info.tokenizer_vocab_size == published.tokenizer_vocab_size
    assert info.bytes_on_disk >= published.bytes_on_disk
    with pytest.raises(FileNotFoundError, match="empty/config.json is missing"):
        fetch_gcs_checkpoint(ModelSpec(), GCSModel(bucket="models", path="empty", random_weights=False), tmp_path / "x")


def test_prepare_model_on_gke_writes_the_info_file(bucket, tmp_path):
    spec = BenchmarkSpec.model_validate({
        "accelerator": {"type": "nvidia-l4"},
        "gke": {"project": "p", "location": "us-central1", "cluster": "c",
                "model": {"source": "gcs", "bucket": "models", "path": "random/tiny"}},
    })
    info = prepare_model(spec, tmp_path)
    assert read_model_info(tmp_path) == info
    assert json.loads((tmp_path / MODEL_INFO_FILE).read_text())["path"] == "gs://models/random/tiny"


def test_describe_checkpoint_matches_the_generator(tiny_model):
    described = describe_checkpoint(ModelSpec(), "somewhere", Path(tiny_model.path), 1, 0.0)
    assert described.parameters == tiny_model.parameters
    assert described.shape == tiny_model.shape
    assert described.tokenizer_vocab_size == tiny_model.tokenizer_vocab_size
