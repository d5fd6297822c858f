"""desired_objects: the children one LLMDeployment should have, as plain dicts.

The same function feeds the operator (server-side apply) and `llmops render` (GitOps review,
`kubectl diff`), so what a reviewer sees is what gets applied.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from typing import Any

import jinja2
import yaml

from llm_operator.api.model_uri import is_gguf_uri
from llm_operator.api.resource import API_VERSION, KIND, LLMDeployment
from llm_operator.api.spec import API_KEY_ENV, LLMDeploymentSpec
from llm_operator.cost import budget_capped_max, entry_dollars_per_hour
from llm_operator.render.config import config_data, config_hash
from llm_operator.render.merge import strategic_merge
from llm_operator.render.names import child_name, config_map_name
from llm_operator.render.scheduling import affinity, tolerations
from llm_operator.render.settings import RenderSettings
from llm_operator.replicas import replica_target
from llm_operator.resolve import DRAIN_SECONDS, MODEL_MOUNT, SERVER_PORT, Resolution

DEPLOYMENT_LABEL = "inference.llmops.dev/deployment"
MANAGED_BY = {"app.kubernetes.io/managed-by": "llm-operator"}  # on every child and pod
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=llm-operator"
ACCELERATOR_LABEL = "inference.llmops.dev/accelerator"
OPTION_LABEL = "inference.llmops.dev/accelerator-option"  # primary, fallback-0, ...
CONFIG_HASH_ANNOTATION = "inference.llmops.dev/config-hash"
CONTAINER = "llm-server"
CONFIG_MOUNT = "/etc/llm-server"
CACHE_MOUNT = "/model-cache"
STARTUP_PERIOD_SECONDS = 10
TERMINATION_MARGIN_SECONDS = 5  # after the preStop sleep and the server's drain


class UnresolvedSpecError(ValueError):
    """The resolution has problems (e.g. InsufficientGPUMemory): there is nothing to render."""


def selector_labels(name: str) -> dict[str, str]:
    """The pods' selector (immutable in a Deployment; also status.selector)."""
    return {"app.kubernetes.io/name": "llm-server", DEPLOYMENT_LABEL: name}


def common_labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "llm-server",
        "app.kubernetes.io/instance": name,
        **MANAGED_BY,
        DEPLOYMENT_LABEL: name,
    }


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llm_operator", "render/templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


# libyaml's parser when PyYAML has it: the operator renders on every reconcile (same result).
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _render(template: str, **values: Any) -> dict[str, Any]:
    text = _environment().get_template(f"{template}.yaml.j2").render(**values)
    rendered: dict[str, Any] = json.loads(_parsed_as_json(text))
    return rendered


@lru_cache(maxsize=8192)
def _parsed_as_json(text: str) -> str:
    """YAML parsing dominated a reconcile; an unchanged spec renders the same text every
    resync and autoscaler tick. Cached as JSON so each caller gets its own fresh objects."""
    return json.dumps(yaml.load(text, Loader=_Loader))


def desired_objects(
    resource: LLMDeployment,
    resolution: Resolution,
    settings: RenderSettings | None = None,
    replicas: int | None = None,
) -> list[dict[str, Any]]:
    """ConfigMap, Service, Deployment, PodDisruptionBudget [, ServiceMonitor, ScaledObject,
    NetworkPolicy, InferencePool] (ScaledObject with autoscaling.mode keda, InferencePool with
    spec.inferencePool while its CRD is served).

    `replicas` is decide()'s count; None = the replica target before any autoscaler decision
    (replicas.replica_target: what the operator's first reconcile applies, so `llmops render`
    shows the same).
    """
    if not resolution.ok:
        raise UnresolvedSpecError("; ".join(p.message for p in resolution.problems))
    settings = settings or RenderSettings()
    name = resource.metadata.name  # labels and the owner reference; children: child_name

    def metadata(object_name: str = child_name(name)) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": object_name}
        if resource.metadata.namespace:
            meta["namespace"] = resource.metadata.namespace
        meta["labels"] = common_labels(name)
        if resource.metadata.uid:
            meta["ownerReferences"] = [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": name,
                    "uid": resource.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        return meta

    selector = selector_labels(name)
    data = config_data(resolution)
    objects = [
        _render("configmap", metadata=metadata(config_map_name(name)), data=data),
        _render(
            "service", metadata=metadata(), selector=selector, service_port=settings.service_port
        ),
        _deployment(resource, resolution, settings, metadata(), data, replicas),
        _render("poddisruptionbudget", metadata=metadata(), selector=selector),
    ]
    if settings.service_monitor:
        objects.append(
            _render(
                "servicemonitor",
                metadata=metadata(),
                selector=selector,
                scrape_interval=settings.scrape_interval,
            )
        )
    if resource.spec.autoscaling.mode == "keda":
        objects.append(_scaled_object(resource, resolution, settings, metadata()))
    if resource.spec.inference_pool is not None and settings.inference_pool:
        objects.append(
            _render(
                "inferencepool",
                metadata=metadata(),
                selector=selector,
                port=SERVER_PORT,
                picker=resource.spec.inference_pool,
            )
        )
    if settings.network_policy:
        peers: list[dict[str, Any]] = [{"podSelector": {}}]
        peers += [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
            for namespace in settings.network_policy_namespaces
        ]
        objects.append(
            _render(
                "networkpolicy",
                metadata=metadata(),
                selector=selector,
                peers=peers,
                port=SERVER_PORT,
            )
        )
    return objects


# The HPA refuses stabilization windows over an hour.
HPA_MAX_WINDOW_SECONDS = 3600


def _replicas(spec: LLMDeploymentSpec, resolution: Resolution, replicas: int | None) -> int | None:
    """The count given, else the replica target (what the operator's first reconcile applies);
    None for keda: the ScaledObject's HPA owns Deployment.spec.replicas there."""
    if replicas is not None:
        return replicas
    if spec.autoscaling.mode == "keda":
        return None
    per_replica = entry_dollars_per_hour(
        resolution.accelerator, resolution.count, resolution.capacity
    )
    return replica_target(spec, per_replica)


def _scaled_object(
    resource: LLMDeployment,
    resolution: Resolution,
    settings: RenderSettings,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """KEDA ScaledObject on the same queue metric and bounds as the builtin autoscaler.

    The query sums the deployment's waiting requests (the series Prometheus scraped through
    the Service, hence its `service` label); AverageValue divides it by the replica count, so
    the HPA aims at targetQueueDepth waiting requests per replica. maxReplicaCount is the
    budget-capped max, priced for the resolved option like the builtin clamp.
    """
    name, spec = child_name(resource.metadata.name), resource.spec  # the Deployment, Service
    per_replica = entry_dollars_per_hour(
        resolution.accelerator, resolution.count, resolution.capacity
    )
    capped = budget_capped_max(spec, per_replica)
    namespace = resource.metadata.namespace or "default"
    autoscaling = spec.autoscaling
    return _render(
        "scaledobject",
        metadata=metadata,
        target=name,
        min_replicas=replica_target(spec, per_replica),  # the floor, within the budget
        max_replicas=capped,
        polling_seconds=settings.keda_polling_seconds,
        scale_up_seconds=min(autoscaling.scale_up_stabilization_seconds, HPA_MAX_WINDOW_SECONDS),
        scale_down_seconds=min(
            autoscaling.scale_down_stabilization_seconds, HPA_MAX_WINDOW_SECONDS
        ),
        server_address=settings.keda_prometheus_address,
        query=f'sum(vllm:num_requests_waiting{{namespace="{namespace}",service="{name}"}})',
        threshold=str(autoscaling.target_queue_depth),
    )


def _deployment(
    resource: LLMDeployment,
    resolution: Resolution,
    settings: RenderSettings,
    metadata: dict[str, Any],
    data: dict[str, str],
    replicas: int | None,
) -> dict[str, Any]:
    name, spec = resource.metadata.name, resource.spec
    option = (
        "primary" if resolution.fallback_index is None else f"fallback-{resolution.fallback_index}"
    )
    pod_labels = {
        **common_labels(name),
        ACCELERATOR_LABEL: resolution.accelerator.name,
        OPTION_LABEL: option,
    }
    volumes, mounts = _volumes(resource, resolution, settings)
    deployment = _render(
        "deployment",
        metadata=metadata,
        replicas=_replicas(spec, resolution, replicas),
        progress_deadline_seconds=settings.startup_timeout_seconds + 300,
        selector=selector_labels(name),
        pod_labels=pod_labels,
        pod_annotations={
            CONFIG_HASH_ANNOTATION: config_hash(data, resolution.server_args),
            "kubectl.kubernetes.io/default-container": CONTAINER,
        },
        termination_grace_seconds=settings.prestop_sleep_seconds
        + DRAIN_SECONDS
        + TERMINATION_MARGIN_SECONDS,
        run_as_user=settings.run_as_user,
        affinity=affinity(resolution),
        tolerations=tolerations(resolution),
        image=spec.server.image or settings.image(cpu=resolution.accelerator.is_cpu),
        image_pull_policy=settings.image_pull_policy,
        args=list(resolution.server_args),
        env=_env(spec),
        port=SERVER_PORT,
        resources=_resources(spec, resolution),
        startup_period_seconds=STARTUP_PERIOD_SECONDS,
        startup_failure_threshold=-(-settings.startup_timeout_seconds // STARTUP_PERIOD_SECONDS),
        prestop_sleep_seconds=settings.prestop_sleep_seconds,
        volume_mounts=mounts,
        volumes=volumes,
    )
    if spec.server.pod_template:
        template = strategic_merge(deployment["spec"]["template"], spec.server.pod_template)
        # The selector is immutable and must keep matching, whatever the patch says.
        template.setdefault("metadata", {}).setdefault("labels", {}).update(selector_labels(name))
        deployment["spec"]["template"] = template
    return deployment


def _env(spec: LLMDeploymentSpec) -> list[dict[str, Any]]:
    """Writable caches under the read-only root, then the user's env (same name: user wins),
    then the API key(s) from the referenced Secret (the spec forbids setting it twice)."""
    env: dict[str, dict[str, Any]] = {
        e["name"]: e
        for e in (
            {"name": "HOME", "value": "/tmp"},
            {"name": "XDG_CACHE_HOME", "value": CACHE_MOUNT},
            {"name": "HF_HOME", "value": f"{CACHE_MOUNT}/huggingface"},
        )
    }
    for var in spec.server.env:
        env[var.name] = var.model_dump(by_alias=True, exclude_none=True)
    if (secret := spec.server.api_key_secret) is not None:
        env[API_KEY_ENV] = {
            "name": API_KEY_ENV,
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
        }
    return list(env.values())


def _resources(spec: LLMDeploymentSpec, resolution: Resolution) -> dict[str, Any]:
    """The user's CPU/memory if given, else derived; GPUs always from the resolution."""
    accelerator, count = resolution.accelerator, resolution.count
    if spec.server.resources is not None:
        requests = dict(spec.server.resources.requests)
        limits = dict(spec.server.resources.limits)
    elif accelerator.is_cpu:
        requests, limits = {"cpu": "2", "memory": "4Gi"}, {"memory": "4Gi"}
    else:
        # Small enough for the smallest GPU VMs (g2-standard-4: 4 vCPU, 16 GB per L4).
        memory = f"{8 * count}Gi"
        requests, limits = {"cpu": str(2 * count), "memory": memory}, {"memory": memory}
    if not accelerator.is_cpu:
        requests[accelerator.resource_name] = count
        limits[accelerator.resource_name] = count
    out: dict[str, Any] = {"requests": requests}
    if limits:
        out["limits"] = limits
    return out


def _volumes(
    resource: LLMDeployment, resolution: Resolution, settings: RenderSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    name, uri = resource.metadata.name, resource.spec.model.uri
    cache_source: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": settings.model_cache_claim}}
        if settings.model_cache_claim
        else {"emptyDir": {}}
    )
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(name)}},
        {"name": "model-cache", **cache_source},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "model-cache", "mountPath": CACHE_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if uri.startswith("file://"):
        path = uri.removeprefix("file://").rstrip("/") or "/"
        kind = "File" if is_gguf_uri(uri) else "Directory"
        volumes.append({"name": "model", "hostPath": {"path": path, "type": kind}})
        mounts.append({"name": "model", "mountPath": path, "readOnly": True})
    elif uri.startswith("pvc://"):
        claim = uri.removeprefix("pvc://").split("/", 1)[0]
        volumes.append(
            {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True})
    elif uri.startswith("oci://"):
        # An image volume (Kubernetes 1.31+, ImageVolume): the kubelet pulls the artifact.
        reference = uri.removeprefix("oci://")
        volumes.append(
            {"name": "model", "image": {"reference": reference, "pullPolicy": "IfNotPresent"}}
        )
        mounts.append({"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True})
    if not resolution.accelerator.is_cpu and resolution.count > 1:
        # NCCL between tensor-parallel ranks needs more than the runtime's 64 MiB /dev/shm.
        volumes.append(
            {
                "name": "dshm",
                "emptyDir": {"medium": "Memory", "sizeLimit": settings.shared_memory_size},
            }
        )
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump_objects(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in template order, multi-line strings as blocks."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, explicit_start=True)
