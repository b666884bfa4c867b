"""The structure of compiled pipeline definitions, normalised for comparison: what a reviewer checks in
a diff (steps, edges, parameters, exit handler, pod settings), not the bytes a compiler happens to write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

# --- KFP IR -----------------------------------------------------------------------------------------


def load_kfp(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline spec, platform spec) of a package; both must parse into KFP's protos."""
    docs = list(yaml.safe_load_all(path.read_text()))
    spec, platform = docs[0], docs[1] if len(docs) > 1 else {}
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    return spec, platform


def _yaml_value(name: str, value: Any) -> Any:
    return yaml.safe_load(value) if name == "spec_yaml" and value else value


def _kfp_tasks(dag: dict[str, Any]) -> dict[str, Any]:
    tasks = {}
    for name, task in dag["tasks"].items():
        entry = {"component": task["componentRef"]["name"], "after": sorted(task.get("dependentTasks", []))}
        if "triggerPolicy" in task:
            entry["trigger"] = task["triggerPolicy"].get("strategy")
        if "parameterIterator" in task:
            entry["loop_parallelism"] = task.get("iteratorPolicy", {}).get("parallelismLimit")
        tasks[name] = entry
    return tasks


def kfp_structure(path: Path) -> dict[str, Any]:
    spec, platform = load_kfp(path)
    parameters = {name: {"type": p["parameterType"], "default": _yaml_value(name, p.get("defaultValue"))}
                  for name, p in spec["root"]["inputDefinitions"]["parameters"].items()}
    dags = {"root": _kfp_tasks(spec["root"]["dag"])}
    dags |= {name: _kfp_tasks(c["dag"]) for name, c in spec["components"].items() if "dag" in c}
    executors = spec["deploymentSpec"]["executors"]
    kubernetes = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
    return {
        "pipeline": spec["pipelineInfo"]["name"],
        "parameters": parameters,
        "dags": dags,
        "executors": {label: executor["container"]["command"][:3] for label, executor in sorted(executors.items())},
        "kubernetes": kubernetes.get("executors", {}),
    }


def kfp_step_ancestors(structure: dict[str, Any]) -> dict[str, set[str]]:
    """Every step (leaf task) and all steps it waits for, directly or through a group (exit handler, loop)."""
    dags = structure["dags"]
    return _ancestors(dags, "root", lambda task: task["component"] if task["component"] in dags else None,
                      lambda task: task["after"])


# --- Argo Workflow ----------------------------------------------------------------------------------


def argo_structure(path: Path) -> dict[str, Any]:
    from hera.workflows.models import Workflow as WorkflowModel

    workflow = yaml.safe_load(path.read_text())
    WorkflowModel.model_validate(workflow)  # Argo's schema, as hera's generated models encode it
    spec = workflow["spec"]
    dags, steps = {}, {}
    for template in spec["templates"]:
        if "dag" in template:
            dags[template["name"]] = {
                "parallelism": template.get("parallelism"),
                "tasks": {t["name"]: {"template": t["template"], "depends": t.get("depends"),
                                      "with_param": t.get("withParam")} for t in template["dag"]["tasks"]},
            }
        else:
            steps[template["name"]] = _argo_step(template)
    return {
        "entrypoint": spec["entrypoint"],
        "on_exit": spec.get("onExit"),
        "namespace": workflow["metadata"].get("namespace"),
        "service_account": spec.get("serviceAccountName"),
        "node_selector": spec.get("nodeSelector"),
        "tolerations": spec.get("tolerations"),
        "parameters": {p["name"]: _yaml_value(p["name"], p.get("value")) for p in spec["arguments"]["parameters"]},
        "dags": dags,
        "steps": steps,
    }


def _argo_step(template: dict[str, Any]) -> dict[str, Any]:
    def names(io: dict[str, Any] | None, kind: str) -> list[str]:
        return [item["name"] for item in (io or {}).get(kind, [])]

    inputs, outputs = template.get("inputs"), template.get("outputs")
    return {
        "command": template["container"]["command"] + template["container"]["args"][:1],
        "inputs": names(inputs, "parameters") + [f"file:{n}" for n in names(inputs, "artifacts")],
        "outputs": names(outputs, "parameters") + [f"file:{n}" for n in names(outputs, "artifacts")],
        "keyed_artifacts": {a["name"]: a["gcs"]["key"] for io in (inputs, outputs) for a in (io or {}).get(
            "artifacts", []) if "gcs" in a},
        "retry": template.get("retryStrategy"),
        "env": [env["name"] for env in template["container"].get("env", [])],
    }


def argo_step_ancestors(structure: dict[str, Any]) -> dict[str, set[str]]:
    dags = structure["dags"]
    return _ancestors(dags, structure["entrypoint"],
                      lambda task: task["template"] if task["template"] in dags else None,
                      lambda task: _depends_names(task["depends"]))


def _depends_names(depends: str | None) -> list[str]:
    words = (depends or "").replace("(", " ").replace(")", " ").replace("&&", " ").replace("||", " ").split()
    return sorted({word.split(".")[0] for word in words})


# --- shared -----------------------------------------------------------------------------------------


def _ancestors(dags: dict[str, dict[str, Any]], root: str, group_of: Callable[[dict], str | None],
               after_of: Callable[[dict], list[str]]) -> dict[str, set[str]]:
    def leaves(dag: str) -> set[str]:
        found: set[str] = set()
        for name, task in _tasks(dags[dag]).items():
            found |= leaves(group_of(task)) if group_of(task) else {name}
        return found

    direct: dict[str, set[str]] = {}

    def walk(dag: str, inherited: set[str]) -> None:
        tasks = _tasks(dags[dag])
        for name, task in tasks.items():
            waits = set(inherited)
            for upstream in after_of(task):
                group = group_of(tasks[upstream])
                waits |= leaves(group) if group else {upstream}
            if group_of(task):
                walk(group_of(task), waits)
            else:
                direct[name] = waits

    walk(root, set())
    closed = {}
    for step in direct:
        seen, stack = set(), list(direct[step])
        while stack:
            upstream = stack.pop()
            if upstream not in seen:
                seen.add(upstream)
                stack.extend(direct.get(upstream, ()))
        closed[step] = seen
    return closed


def _tasks(dag: dict[str, Any]) -> dict[str, dict]:
    """A DAG's tasks: KFP's normalised DAGs are the task mapping itself, Argo's hold it under "tasks"."""
    return dag["tasks"] if "parallelism" in dag else dag
