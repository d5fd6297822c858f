"""Operator-wide rendering settings (from flags / Helm values), frozen after start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_operator import __version__
from llm_operator.render.policy import PodPolicy


@dataclass(frozen=True)
class RenderSettings:
    image_repository: str = "ghcr.io/llmops-dev/llm-server"
    image_tag: str = __version__
    cpu_image_suffix: str = "-cpu"  # CPU pods run the CPU build: <tag>-cpu
    image_pull_policy: str = "IfNotPresent"
    service_port: int = 80
    service_monitor: bool = False  # set when the monitoring.coreos.com CRD exists, or by flag
    scrape_interval: str = "15s"
    network_policy: bool = False  # opt-in
    # spec.inferencePool renders an InferencePool; the operator turns this off at start-up when
    # the API server does not serve inference.networking.k8s.io/v1 inferencepools.
    inference_pool: bool = True
    network_policy_namespaces: tuple[str, ...] = ()  # namespaces allowed in, besides its own
    prestop_sleep_seconds: int = 5  # lets endpoints drop the pod before SIGTERM
    startup_timeout_seconds: int = 1800  # weight download + load before liveness applies
    run_as_user: int = 1000
    model_cache_claim: str | None = None  # a PVC for the model cache instead of an emptyDir
    shared_memory_size: str = "2Gi"  # /dev/shm for tensor-parallel (NCCL) pods
    # autoscaling.mode keda: the Prometheus the ScaledObject's trigger queries (it must scrape
    # the llm-server pods, e.g. through the ServiceMonitor) and KEDA's polling interval.
    keda_prometheus_address: str = "http://prometheus-operated.monitoring.svc:9090"
    keda_polling_seconds: int = 10
    # What the pods may use (hostPath prefixes, image registries, Secrets ...): render/policy.py
    pod_policy: PodPolicy = field(default_factory=PodPolicy)

    def image(self, cpu: bool) -> str:
        suffix = self.cpu_image_suffix if cpu else ""
        return f"{self.image_repository}:{self.image_tag}{suffix}"
