"""Check manifests against the Kubernetes schema the `kubernetes` client's models encode.

Built-in kinds are walked field by field against each model's `openapi_types`/`attribute_map`, so
an unknown or misspelt key is an error (deserializing alone would drop it silently), then
deserialized, which enforces required fields. The two CRDs the project renders (PodMonitoring,
ComputeClass) have no client model: their required structure is checked by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

_MODELS: dict[tuple[str, str], str] = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "PodTemplate"): "V1PodTemplate",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
}
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "datetime": (str,), "date": (str,),
}
_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(([^,]+), (.+)\)$")


class ManifestError(ValueError):
    pass


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Raise ManifestError naming the first field that breaks the schema."""
    key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
    if key in _CRD_CHECKS:
        _CRD_CHECKS[key](manifest)
        return
    model = _MODELS.get(key)
    if model is None:
        raise ManifestError(f"no schema for {key[0]} {key[1]}")
    _walk(manifest, model, key[1])
    try:
        k8s.ApiClient()._ApiClient__deserialize(manifest, model)
    except (ValueError, TypeError) as error:
        raise ManifestError(f"{key[1]}: {error}") from None


def _walk(value: Any, type_name: str, path: str) -> None:
    if value is None:
        return
    if match := _LIST.match(type_name):
        _expect(value, (list,), path, type_name)
        for index, item in enumerate(value):
            _walk(item, match.group(1), f"{path}[{index}]")
    elif match := _DICT.match(type_name):
        _expect(value, (dict,), path, type_name)
        for item_key, item in value.items():
            _walk(item, match.group(2), f"{path}.{item_key}")
    elif type_name == "object":  # int-or-string, quantities and free-form fields
        return
    elif type_name in _PRIMITIVES:
        if isinstance(value, bool) and type_name != "bool":
            raise ManifestError(f"{path}: expected {type_name}, got bool")
        _expect(value, _PRIMITIVES[type_name], path, type_name)
    else:
        _walk_model(value, type_name, path)


def _walk_model(value: Any, type_name: str, path: str) -> None:
    _expect(value, (dict,), path, type_name)
    model = getattr(k8s, type_name)
    by_json_key = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for json_key, item in value.items():
        if json_key not in by_json_key:
            raise ManifestError(f"{path}: unknown field {json_key!r} for {type_name}")
        _walk(item, model.openapi_types[by_json_key[json_key]], f"{path}.{json_key}")


def _expect(value: Any, types: tuple[type, ...], path: str, type_name: str) -> None:
    if not isinstance(value, types):
        raise ManifestError(f"{path}: expected {type_name}, got {type(value).__name__}")


def _require(obj: Any, path: str, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict) or obj.get(key) in (None, "", [], {}):
            raise ManifestError(f"{path}: missing required field {key!r}")
        obj, path = obj[key], f"{path}.{key}"
    return obj


def _check_pod_monitoring(manifest: dict[str, Any]) -> None:
    _require(manifest, "PodMonitoring", "metadata", "name")
    _require(manifest, "PodMonitoring", "spec", "selector")
    endpoints = _require(manifest, "PodMonitoring", "spec", "endpoints")
    for index, endpoint in enumerate(endpoints):
        port = _require(endpoint, f"PodMonitoring.spec.endpoints[{index}]", "port")
        if not isinstance(port, int | str) or isinstance(port, bool):
            raise ManifestError(f"PodMonitoring.spec.endpoints[{index}].port: expected a port number or name")
        interval = endpoint.get("interval", "30s")
        if not re.fullmatch(r"\d+(ms|s|m|h)", interval):
            raise ManifestError(f"PodMonitoring.spec.endpoints[{index}].interval: {interval!r} is not a duration")


def _check_compute_class(manifest: dict[str, Any]) -> None:
    _require(manifest, "ComputeClass", "metadata", "name")
    priorities = _require(manifest, "ComputeClass", "spec", "priorities")
    for index, rule in enumerate(priorities):
        where = f"ComputeClass.spec.priorities[{index}]"
        for device in ("gpu", "tpu"):
            if device in rule:
                _require(rule, where, device, "type")
                _require(rule, where, device, "count")
        if not any(key in rule for key in ("gpu", "tpu", "machineFamily", "machineType", "nodepools")):
            raise ManifestError(f"{where}: a priority needs hardware (gpu, tpu, machineFamily or machineType)")


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_provisioning_request(manifest: dict[str, Any]) -> None:
    """The v1 CRD's rules (kubernetes/autoscaler autoscaling.x-k8s.io_provisioningrequests.yaml): a class name,
    1..32 podSets of count >= 1 naming a PodTemplate, string parameters of at most 255 characters."""
    where = "ProvisioningRequest.spec"
    _require(manifest, "ProvisioningRequest", "metadata", "name")
    spec = _require(manifest, "ProvisioningRequest", "spec")
    unknown = set(spec) - {"provisioningClassName", "podSets", "parameters"}
    if unknown:
        raise ManifestError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    name = _require(spec, where, "provisioningClassName")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ManifestError(f"{where}.provisioningClassName: {name!r} is not a class name")
    pod_sets = _require(spec, where, "podSets")
    if not isinstance(pod_sets, list) or not 1 <= len(pod_sets) <= 32:
        raise ManifestError(f"{where}.podSets: 1 to 32 pod sets")
    for index, pod_set in enumerate(pod_sets):
        count = _require(pod_set, f"{where}.podSets[{index}]", "count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ManifestError(f"{where}.podSets[{index}].count: an integer >= 1")
        _require(pod_set, f"{where}.podSets[{index}]", "podTemplateRef", "name")
    for key, value in (spec.get("parameters") or {}).items():
        if not isinstance(value, str) or len(value) > 255:
            raise ManifestError(f"{where}.parameters.{key}: a string of at most 255 characters")


_CRD_CHECKS: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("autoscaling.x-k8s.io/v1", "ProvisioningRequest"): _check_provisioning_request,
    ("monitoring.googleapis.com/v1", "PodMonitoring"): _check_pod_monitoring,
    ("cloud.google.com/v1", "ComputeClass"): _check_compute_class,
}
