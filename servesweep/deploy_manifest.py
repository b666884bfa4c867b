"""`servesweep deploy-manifest`: the Kubernetes objects that serve the report's recommended configuration.

The recommendation is the report's own (servesweep.analysis): within one comparison group (a model serving one
workload shape), the cheapest measured configuration at its ideal batch under the SLO (`recommend.cheapest`, what
the headline names). The server is the one that was measured: the run's spec (runs.spec_json: server kind, its
flags and extra args, quantization, accelerator type and count, max_model_len, GPU memory share) with
`--max-num-seqs` (the kind's batch cap) set to the ideal batch, rendered by the same builders a GKE run deploys
with (servesweep.platform.gke.cluster.server_bundle); the cluster side (namespace, images, the model's bucket or
hub id, provisioning) comes from a GKE spec's `gke` section. Objects: the Deployment, its Service, the Managed
Prometheus PodMonitoring that scrapes it, and a HorizontalPodAutoscaler on the server's queue length.

The autoscaler reads the queue through the custom metrics API as GKE's Custom Metrics Stackdriver Adapter
serves Managed Prometheus metrics: a `Pods` metric named `prometheus.googleapis.com|<metric>|gauge` with an
AverageValue target (GKE's sample "Custom metrics prometheus exporter HPA"). The target is the peak queue the
server had at the recommended point (points.waiting_requests_max, at least 1), else `--queue-target`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from servesweep.analysis.models import IdealBatch
from servesweep.analysis.recommend import cheapest, group_by
from servesweep.analysis.report import build_report
from servesweep.k8s.manifests import ServerBundle, resource_name, to_dict
from servesweep.k8s.provision import default_name, node_pool_for, node_selector_for
from servesweep.k8s.validate import ManifestError, validate_manifest
from servesweep.platform.gke.cluster import server_bundle
from servesweep.spec import BenchmarkSpec, SLOSpec, SpecError, spec_from_json

# The server's count of requests waiting for a batch slot, per server kind (its Prometheus gauge).
QUEUE_METRICS = {"vllm": "vllm:num_requests_waiting", "tgi": "tgi_queue_size", "sglang": "sglang:num_queue_reqs"}


class DeployManifestError(ValueError):
    """Why no manifest can be written, in one line."""


@dataclass(frozen=True)
class Recommendation:
    row: IdealBatch
    measured: BenchmarkSpec | None  # the run's spec; None: a run written before lake v4 kept none
    queue_peak: float | None  # waiting_requests_max at the recommended point


@dataclass(frozen=True)
class DeployManifests:
    recommendation: Recommendation
    manifests: list[dict[str, Any]]
    notes: list[str]


def recommend(lake_uri: str, run_ids: Sequence[str], slo: SLOSpec, config: str | None = None,
              pricing: str = "on-demand") -> Recommendation:
    """The recommended configuration of the runs (all when empty), narrowed by `config` (a config id, label or
    comparison group); DeployManifestError when none meets the SLO, or the choice is ambiguous."""
    report = build_report(lake_uri, list(run_ids), slo, pricing=pricing)
    rows = [row for row in report.ideal_batches if row.source == "measured"]
    if config:
        rows = [row for row in rows if config in (row.config_id, row.config_label, row.comparison_group)]
        if not rows:
            raise DeployManifestError(f"no measured configuration {config!r} in these runs; --config takes a "
                                      f"config id, label or comparison group (servesweep query \"select config_id, "
                                      f"config_label, comparison_group from ideal_batch\")")
    groups = group_by(rows, lambda row: row.comparison_group)
    if len(groups) > 1:
        raise DeployManifestError(f"{len(groups)} comparison groups (models or workloads) in these runs: choose one "
                                  f"with --config, one of: {'; '.join(sorted(groups))}")
    if not rows:
        raise DeployManifestError("no measured point with status ok or partial in these runs")
    best = cheapest(rows)
    if not best.meets_slo or best.ideal_batch_size is None or best.point_id is None:
        raise DeployManifestError(f"no configuration meets the SLO ({_slo_text(slo)}); the cheapest, "
                                  f"{best.config_label}: {best.reason}")
    return Recommendation(best, _measured_spec(lake_uri, best.run_id), _queue_peak(lake_uri, best))


def _slo_text(slo: SLOSpec) -> str:
    bounds = [f"{name} <= {value:g} ms" for name, value in (("p99 TTFT", slo.ttft_p99_ms),
                                                            ("p99 TPOT", slo.tpot_p99_ms),
                                                            ("p99 E2E", slo.e2e_p99_ms)) if value is not None]
    return ", ".join(bounds) or "none set"


def _measured_spec(lake_uri: str, run_id: str) -> BenchmarkSpec | None:
    from servesweep.lake.store import read_table

    runs = read_table(lake_uri, "runs", [run_id]).to_pylist()
    text = runs[0]["spec_json"] if runs else None
    if not text:
        return None
    try:
        return spec_from_json(text)
    except SpecError as error:
        raise DeployManifestError(f"run {run_id}: its spec no longer validates: {error}") from error


def _queue_peak(lake_uri: str, row: IdealBatch) -> float | None:
    from servesweep.lake.query import query

    result = query(lake_uri, f"SELECT waiting_requests_max FROM points WHERE run_id = '{row.run_id}' "
                             f"AND point_id = '{row.point_id}'").to_pylist()
    return result[0]["waiting_requests_max"] if result else None


def deployable_spec(recommendation: Recommendation, gke_spec: BenchmarkSpec) -> tuple[BenchmarkSpec, list[str]]:
    """The measured spec with the cluster's `gke` section; server.env values are withheld in the lake, so they
    are left out (and named in the notes). A run that kept no spec (lakes before v4): the GKE spec's server
    settings with what the points say was measured (model, quantization, server kind, accelerator and count)."""
    if gke_spec.gke is None:
        raise DeployManifestError("the GKE spec has no `gke` section (see specs/gke.yaml)")
    row, measured, notes = recommendation.row, recommendation.measured, []
    if measured is None:
        data = json.loads(gke_spec.model_dump_json())
        if None in (row.model_name, row.server_kind, row.accelerator):
            raise DeployManifestError(f"run {row.run_id} kept no spec and its points do not name the model, server "
                                      "and accelerator: what it measured cannot be deployed")
        data["model"]["name"] = row.model_name
        data["server"]["kind"] = row.server_kind
        data["quantization"] = row.quantization or "none"
        data["accelerator"] = {"type": row.accelerator, "count": row.accelerator_count or 1}
        notes.append(f"run {row.run_id} kept no spec (lake before v4): server settings other than the batch cap "
                     f"(max_model_len {data['server']['max_model_len']}, extra args) are the GKE spec's")
    else:
        data = json.loads(measured.model_dump_json())
    withheld = sorted(data["server"].get("env") or {})
    data["server"]["env"] = {}
    data["gke"] = json.loads(gke_spec.gke.model_dump_json())
    data["run_id"] = row.run_id  # the objects' run-id label: which run measured what they serve
    try:
        spec = BenchmarkSpec.model_validate(data)
    except ValueError as error:
        raise DeployManifestError(f"the measured spec with this cluster's gke section does not validate: "
                                  f"{str(error).splitlines()[0]}") from error
    if withheld:
        notes.append(f"server.env {', '.join(withheld)}: values withheld in the lake; set them on the Deployment")
    if spec.quantization not in ("none", "fp8"):
        notes.append(f"quantization {spec.quantization} is a checkpoint method: gke.model must be that quantized "
                     "checkpoint")
    return spec, notes


def build(recommendation: Recommendation, gke_spec: BenchmarkSpec, *, min_replicas: int = 1, max_replicas: int = 4,
          queue_target: float | None = None) -> DeployManifests:
    """Deployment, Service, PodMonitoring and HorizontalPodAutoscaler for the recommendation, each validated."""
    if not 1 <= min_replicas <= max_replicas:
        raise DeployManifestError(f"replicas: need 1 <= min ({min_replicas}) <= max ({max_replicas})")
    spec, notes = deployable_spec(recommendation, gke_spec)
    row = recommendation.row
    batch = int(row.ideal_batch_size or 0)
    deployment_id = f"{spec.model.name}-{spec.quantization}-b{batch}"
    try:
        bundle = server_bundle(spec, deployment_id, batch, "server_max_seqs", "", _node_selector(spec))
    except ValueError as error:
        raise DeployManifestError(f"cannot render the server: {error}") from error
    manifests = bundle.manifests()
    metric = QUEUE_METRICS.get(spec.server.kind)
    if metric is None:
        notes.append(f"server {spec.server.kind} exposes no queue gauge servesweep knows: no autoscaler written")
    else:
        target, how = _queue_target(recommendation.queue_peak, queue_target)
        notes.append(f"autoscaler: {metric} averaging {target:g} per pod ({how})")
        manifests.append(to_dict(_autoscaler(bundle, metric, target, min_replicas, max_replicas)))
    for manifest in manifests:
        try:
            validate_manifest(manifest)
        except ManifestError as error:
            raise DeployManifestError(f"{manifest.get('kind')}: {error}") from error
    return DeployManifests(recommendation, manifests, notes)


def _node_selector(spec: BenchmarkSpec) -> dict[str, str]:
    gke, accelerator, count = spec.gke, spec.accelerator.type, spec.accelerator.count
    assert gke is not None  # deployable_spec checked it
    if gke.provisioning == "node_pool":
        return node_selector_for("node_pool", accelerator, count, pool=node_pool_for(gke, accelerator, count).name)
    if gke.provisioning == "compute_class":
        return node_selector_for("compute_class", accelerator, count,
                                 compute_class=gke.compute_class or default_name(accelerator, count))
    return node_selector_for(gke.provisioning, accelerator, count, spot=gke.node_pool.spot)


def _queue_target(peak: float | None, chosen: float | None) -> tuple[float, str]:
    if chosen is not None:
        if not chosen > 0:
            raise DeployManifestError(f"--queue-target must be > 0, got {chosen}")
        return chosen, "--queue-target"
    if peak is None:
        raise DeployManifestError("the recommended point has no measured queue (waiting_requests_max): give "
                                  "--queue-target")
    return float(max(1, math.ceil(peak))), f"the peak queue measured at the recommended point, {peak:g}"


def _autoscaler(bundle: ServerBundle, metric: str, target: float, min_replicas: int,
                max_replicas: int) -> k8s.V2HorizontalPodAutoscaler:
    target_value = str(int(target)) if float(target).is_integer() else f"{target:g}"
    return k8s.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2", kind="HorizontalPodAutoscaler",
        metadata=k8s.V1ObjectMeta(name=resource_name(bundle.name, "hpa"), namespace=bundle.namespace,
                                  labels=dict(bundle.labels)),
        spec=k8s.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k8s.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment",
                                                               name=bundle.name),
            min_replicas=min_replicas, max_replicas=max_replicas,
            metrics=[k8s.V2MetricSpec(type="Pods", pods=k8s.V2PodsMetricSource(
                metric=k8s.V2MetricIdentifier(name=f"prometheus.googleapis.com|{metric}|gauge"),
                target=k8s.V2MetricTarget(type="AverageValue", average_value=target_value)))]))


def header(result: DeployManifests, slo: SLOSpec) -> str:
    """The YAML comment that says what is deployed and why."""
    row = result.recommendation.row
    lines = [f"servesweep deploy-manifest: {row.config_label} at batch {row.ideal_batch_size} (run {row.run_id}, "
             f"point {row.point_id})",
             f"measured: {row.output_token_throughput or 0:.4g} output tok/s, p99 TTFT {row.ttft_p99_ms or 0:.4g} ms, "
             f"p99 TPOT {row.tpot_p99_ms or 0:.4g} ms; SLO: {_slo_text(slo)}", *result.notes]
    return "".join(f"# {line}\n" for line in lines)
