"""In-memory stand-ins for the Kubernetes and GKE APIs: they keep objects and record every call."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import container_v1
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.paths import TESTS

FIXTURES = TESTS / "fixtures" / "k8s"
DONE = container_v1.Operation.Status.DONE
RUNNING = container_v1.Operation.Status.RUNNING


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def api_error(status: int, message: str = "") -> ApiException:
    reasons = {404: "Not Found", 403: "Forbidden", 409: "Conflict"}
    error = ApiException(status=status, reason=reasons.get(status, "Error"))
    error.body = json.dumps({"kind": "Status", "message": message}) if message else None
    return error


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _matches(labels: dict[str, str] | None, selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return all((labels or {}).get(key) == value for key, value in wanted.items())


def _metadata(obj: Any) -> dict[str, Any]:
    return obj["metadata"] if isinstance(obj, dict) else k8s.ApiClient().sanitize_for_serialization(obj.metadata)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []


class FakeApps(Recorder):
    """AppsV1Api: deployments by name; `ready_after` polls before one reports ready (None: never)."""

    def __init__(self, ready_after: int | None = 0, fail_create: ApiException | None = None) -> None:
        super().__init__()
        self.deployments: dict[str, Any] = {}
        self.ready_after = ready_after
        self.fail_create = fail_create
        self.reads = 0

    def create_namespaced_deployment(self, namespace: str, body: k8s.V1Deployment) -> k8s.V1Deployment:
        self.calls.append(("create", "deployments", body.metadata.name))
        if self.fail_create:
            raise self.fail_create
        self.deployments[body.metadata.name] = body
        return body

    def read_namespaced_deployment(self, name: str, namespace: str) -> k8s.V1Deployment:
        self.calls.append(("get", "deployments", name))
        self.reads += 1
        ready = self.ready_after is not None and self.reads > self.ready_after
        spec = k8s.V1DeploymentSpec(replicas=1, selector=k8s.V1LabelSelector(), template=k8s.V1PodTemplateSpec())
        return k8s.V1Deployment(spec=spec, status=k8s.V1DeploymentStatus(ready_replicas=1 if ready else None))

    def list_namespaced_deployment(self, namespace: str, label_selector: str = "") -> SimpleNamespace:
        self.calls.append(("list", "deployments", label_selector))
        items = [d for d in self.deployments.values() if _matches(_metadata(d).get("labels"), label_selector)]
        return SimpleNamespace(items=items)

    def delete_namespaced_deployment(self, name: str, namespace: str, **kwargs: Any) -> None:
        self.calls.append(("delete", "deployments", name))
        if self.deployments.pop(name, None) is None:
            raise api_error(404)


class FakeCore(Recorder):
    """CoreV1Api: services, plus pods/events/logs served from a fixture."""

    def __init__(self, fixture: dict[str, Any] | None = None, log_error: ApiException | None = None) -> None:
        super().__init__()
        self.services: dict[str, Any] = {}
        self.config_maps: dict[str, Any] = {}
        self.pod_templates: dict[str, Any] = {}
        self.fixture = fixture or {"pods": [], "events": [], "logs": {}}
        self.log_error = log_error
        self.fail_delete: dict[str, ApiException] = {}

    def _listed(self, resource: str, store: dict[str, Any], label_selector: str) -> SimpleNamespace:
        self.calls.append(("list", resource, label_selector))
        items = [o for o in store.values() if _matches(_metadata(o).get("labels"), label_selector)]
        return SimpleNamespace(items=items)

    def _deleted(self, resource: str, store: dict[str, Any], name: str) -> None:
        self.calls.append(("delete", resource, name))
        if store.pop(name, None) is None:
            raise api_error(404)

    def create_namespaced_service(self, namespace: str, body: k8s.V1Service) -> k8s.V1Service:
        self.calls.append(("create", "services", body.metadata.name))
        self.services[body.metadata.name] = body
        return body

    def list_namespaced_service(self, namespace: str, label_selector: str = "") -> SimpleNamespace:
        return self._listed("services", self.services, label_selector)

    def delete_namespaced_service(self, name: str, namespace: str, **kwargs: Any) -> None:
        if name in self.fail_delete:
            self.calls.append(("delete", "services", name))
            raise self.fail_delete[name]
        self._deleted("services", self.services, name)

    def create_namespaced_config_map(self, namespace: str, body: k8s.V1ConfigMap) -> k8s.V1ConfigMap:
        self.calls.append(("create", "configmaps", body.metadata.name))
        if body.metadata.name in self.config_maps:
            raise api_error(409, f'configmaps "{body.metadata.name}" already exists')
        self.config_maps[body.metadata.name] = body
        return body

    def list_namespaced_config_map(self, namespace: str, label_selector: str = "") -> SimpleNamespace:
        return self._listed("configmaps", self.config_maps, label_selector)

    def delete_namespaced_config_map(self, name: str, namespace: str, **kwargs: Any) -> None:
        self._deleted("configmaps", self.config_maps, name)

    def create_namespaced_pod_template(self, namespace: str, body: k8s.V1PodTemplate) -> k8s.V1PodTemplate:
        self.calls.append(("create", "podtemplates", body.metadata.name))
        self.pod_templates[body.metadata.name] = body
        return body

    def list_namespaced_pod_template(self, namespace: str, label_selector: str = "") -> SimpleNamespace:
        return self._listed("podtemplates", self.pod_templates, label_selector)

    def delete_namespaced_pod_template(self, name: str, namespace: str, **kwargs: Any) -> None:
        self._deleted("podtemplates", self.pod_templates, name)

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> SimpleNamespace:
        self.calls.append(("list", "pods", label_selector))
        return SimpleNamespace(items=self.fixture["pods"])

    def list_namespaced_event(self, namespace: str, field_selector: str = "") -> SimpleNamespace:
        self.calls.append(("list", "events", field_selector))
        return SimpleNamespace(items=self.fixture["events"])

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> str:
        self.calls.append(("get", "pods/log", name))
        if self.log_error:
            raise self.log_error
        return self.fixture["logs"].get(f"{name}/{kwargs.get('container')}", "")


class FakeCustom(Recorder):
    """CustomObjectsApi for PodMonitorings and ProvisioningRequests (namespaced) and ComputeClasses (cluster-scoped).

    `conditions`: what a ProvisioningRequest's status reports on each read (the last one repeats), e.g.
    [[], [{"type": "Provisioned", "status": "True", ...}]]; empty: never any condition.
    """

    def __init__(self, crd_installed: bool = True, conditions: list[list[dict[str, str]]] | None = None) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.crd_installed = crd_installed
        self.conditions = conditions or []
        self.status_reads = 0

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs) -> dict:
        self.calls.append(("get", plural, name))
        if (plural, name) not in self.objects:
            raise api_error(404)
        obj = self.objects[(plural, name)]
        if plural == "provisioningrequests" and self.conditions:
            conditions = self.conditions[min(self.status_reads, len(self.conditions) - 1)]
            self.status_reads += 1
            return {**obj, "status": {"conditions": conditions}}
        return obj

    def _check_crd(self) -> None:
        if not self.crd_installed:
            raise api_error(404, "the server could not find the requested resource")

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kwargs) -> dict:
        self.calls.append(("create", plural, body["metadata"]["name"]))
        self._check_crd()
        self.objects[(plural, body["metadata"]["name"])] = body
        return body

    def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector="", **kwargs) -> dict:
        self.calls.append(("list", plural, label_selector))
        self._check_crd()
        items = [o for (p, _), o in self.objects.items()
                 if p == plural and _matches(o["metadata"].get("labels"), label_selector)]
        return {"items": items}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs) -> None:
        self.calls.append(("delete", plural, name))
        if self.objects.pop((plural, name), None) is None:
            raise api_error(404)

    def get_cluster_custom_object(self, group, version, plural, name) -> dict:
        self.calls.append(("get", plural, name))
        if (plural, name) not in self.objects:
            raise api_error(404)
        return self.objects[(plural, name)]

    def create_cluster_custom_object(self, group, version, plural, body, **kwargs) -> dict:
        self.calls.append(("create", plural, body["metadata"]["name"]))
        self.objects[(plural, body["metadata"]["name"])] = body
        return body

    def delete_cluster_custom_object(self, group, version, plural, name, **kwargs) -> None:
        self.calls.append(("delete", plural, name))
        if self.objects.pop((plural, name), None) is None:
            raise api_error(404)


class FakeClusterManager:
    """Keeps node pools; each operation reports RUNNING for `polls` reads, then DONE (or `error`)."""

    def __init__(self, polls: int = 2, error: str = "") -> None:
        self.pools: dict[str, container_v1.NodePool] = {}
        self.calls: list[tuple] = []
        self.polls = polls
        self.error = error
        self._reads: dict[str, int] = {}

    def _operation(self, kind: container_v1.Operation.Type) -> container_v1.Operation:
        name = f"operation-{len(self.calls)}"
        self._reads[name] = 0
        return container_v1.Operation(name=name, status=RUNNING, operation_type=kind)

    def get_node_pool(self, name: str) -> container_v1.NodePool:
        self.calls.append(("get_node_pool", name))
        pool_name = name.rsplit("/", 1)[1]
        if pool_name not in self.pools:
            raise NotFound(f"node pool {pool_name} not found")
        return self.pools[pool_name]

    def create_node_pool(self, parent: str, node_pool: container_v1.NodePool) -> container_v1.Operation:
        self.calls.append(("create_node_pool", parent, node_pool.name))
        self.pools[node_pool.name] = node_pool
        return self._operation(container_v1.Operation.Type.CREATE_NODE_POOL)

    def set_node_pool_size(self, request: dict) -> container_v1.Operation:
        self.calls.append(("set_node_pool_size", request["name"], request["node_count"]))
        return self._operation(container_v1.Operation.Type.SET_NODE_POOL_SIZE)

    def delete_node_pool(self, name: str) -> container_v1.Operation:
        self.calls.append(("delete_node_pool", name))
        self.pools.pop(name.rsplit("/", 1)[1], None)
        return self._operation(container_v1.Operation.Type.DELETE_NODE_POOL)

    def get_operation(self, name: str) -> container_v1.Operation:
        operation_name = name.rsplit("/", 1)[1]
        assert name.startswith("projects/bench-project/locations/us-central1/operations/")
        self._reads[operation_name] += 1
        if self._reads[operation_name] < self.polls:
            return container_v1.Operation(name=operation_name, status=RUNNING)
        operation = container_v1.Operation(name=operation_name, status=DONE)
        if self.error:
            operation.error.code = 8
            operation.error.message = self.error
        return operation

    def mutations(self) -> list[tuple]:
        return [call for call in self.calls if call[0] != "get_node_pool"]
