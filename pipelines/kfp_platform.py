"""Kubernetes settings of the KFP step pods, added at compile time (kfp-kubernetes' executor config).

The pipeline function stays platform-free (the KFP local runner runs it as it is). For a cluster,
`with_runner_platform` returns a copy whose every step carries the runner's node selector,
tolerations and image pull secrets, the very `KubernetesExecutorConfig` messages kfp-kubernetes'
helpers write, and gives load-model the Hugging Face token from its Secret when the model comes
from the hub. The service account is no per-step setting in KFP v2: it is given per run
(`servesweep submit --kfp` passes `gke.runner_service_account`).
"""

from __future__ import annotations

import copy

from google.protobuf import json_format
from kfp.dsl.graph_component import GraphComponent
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb
from kfp.pipeline_spec import pipeline_spec_pb2

from servesweep.gke_spec import GKESpec, HuggingFaceModel
from servesweep.k8s.accelerators import GPU_RESOURCE, StepGPU
from servesweep.spec import ExternalEndpoint, SecretRef

HF_TOKEN_ENV = "HF_TOKEN"
LOAD_MODEL_EXECUTOR = "exec-load-model"
QUANTIZE_EXECUTOR = "exec-quantize"
# The steps that talk to an external endpoint: they get its token from its Secret (server.external.auth_secret).
ENDPOINT_EXECUTORS = ("exec-deploy-server", "exec-sweep", "exec-accuracy")


def _constant(value: str) -> pipeline_spec_pb2.TaskInputsSpec.InputParameterSpec:
    spec = pipeline_spec_pb2.TaskInputsSpec.InputParameterSpec()
    spec.runtime_value.constant.string_value = value
    return spec


def executor_config(gke: GKESpec, hf_token: bool = False,
                    endpoint_token: tuple[str, SecretRef] | None = None,
                    gpu: StepGPU | None = None) -> k8s_pb.KubernetesExecutorConfig:
    """One step pod's settings; `hf_token` adds the hub token as env (load-model only), `endpoint_token`
    (variable, Secret key) an external endpoint's token (deploy-server, sweep and accuracy), `gpu` a GPU node
    in place of the runner's (quantize)."""
    runner = gke.runner
    config = k8s_pb.KubernetesExecutorConfig()
    config.node_selector.labels.update(gpu.node_selector if gpu else runner.node_selector)
    for toleration in runner.tolerations:
        config.tolerations.append(k8s_pb.Toleration(key=toleration.key, operator=toleration.operator,
                                                    value=toleration.value, effect=toleration.effect))
    if gpu:
        key, operator, effect = gpu.toleration
        config.tolerations.append(k8s_pb.Toleration(key=key, operator=operator, effect=effect))
    for name in runner.image_pull_secrets:
        # Both fields, as kfp-kubernetes writes them: older backends read secret_name.
        config.image_pull_secret.append(k8s_pb.ImagePullSecret(secret_name=name, secret_name_parameter=_constant(name)))
    source = gke.model
    if hf_token and isinstance(source, HuggingFaceModel) and source.token_secret:
        key_to_env = [k8s_pb.SecretAsEnv.SecretKeyToEnvMap(secret_key=source.token_key, env_var=HF_TOKEN_ENV)]
        config.secret_as_env.append(k8s_pb.SecretAsEnv(
            secret_name=source.token_secret, secret_name_parameter=_constant(source.token_secret),
            key_to_env=key_to_env,
        ))
    if endpoint_token is not None:
        env, ref = endpoint_token
        config.secret_as_env.append(k8s_pb.SecretAsEnv(
            secret_name=ref.secret, secret_name_parameter=_constant(ref.secret),
            key_to_env=[k8s_pb.SecretAsEnv.SecretKeyToEnvMap(secret_key=ref.key, env_var=env)],
        ))
    return config


def endpoint_secret(external: ExternalEndpoint | None) -> tuple[str, SecretRef] | None:
    """(variable, Secret key) of an external endpoint whose token lives in a Kubernetes Secret."""
    if external is None or external.auth_secret is None or external.token_env is None:
        return None
    return external.token_env, external.auth_secret


def executor_labels(pipeline: GraphComponent) -> list[str]:
    return sorted(pipeline.pipeline_spec.deployment_spec["executors"].keys())


def with_runner_platform(pipeline: GraphComponent, gke: GKESpec,
                         external: ExternalEndpoint | None = None,
                         quantize_gpu: StepGPU | None = None) -> GraphComponent:
    """A copy of `pipeline` whose step pods run where and as `gke.runner` says (and, for an external endpoint
    whose token is in a Secret, whose deploy-server and sweep pods read it from there; with `quantize_gpu`, the
    quantize step's pod asks for that GPU)."""
    executors = {}
    token = endpoint_secret(external)
    for label in executor_labels(pipeline):
        config = executor_config(gke, hf_token=label == LOAD_MODEL_EXECUTOR,
                                 endpoint_token=token if label in ENDPOINT_EXECUTORS else None,
                                 gpu=quantize_gpu if label == QUANTIZE_EXECUTOR else None)
        if config.ByteSize():
            executors[label] = json_format.MessageToDict(config)
    platformed = copy.deepcopy(pipeline)
    if quantize_gpu:  # the container's accelerator request, as set_accelerator_type/limit write it
        container = platformed.pipeline_spec.deployment_spec["executors"][QUANTIZE_EXECUTOR]["container"]
        container["resources"] = {"accelerator": {"type": GPU_RESOURCE, "resourceType": GPU_RESOURCE,
                                                  "count": "1", "resourceCount": "1"}}
    if executors:
        runner = json_format.ParseDict({"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}},
                                       pipeline_spec_pb2.PlatformSpec())
        platformed.component_spec.platform_spec.MergeFrom(runner)
    return platformed
