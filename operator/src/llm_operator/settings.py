"""The operator's command line -> one frozen OperatorConfig (house rule 6).

Flags are parsed once; the catalog (file or ConfigMap) is read once at start-up. kopf's own
settings are derived here too, so handlers.py stays decorators only.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from llm_operator.catalog import Catalog, default_catalog
from llm_operator.plan import FallbackSettings, ReconcileSettings
from llm_operator.render import RenderSettings
from llm_operator.render.policy import add_policy_arguments, policy_from_args

if TYPE_CHECKING:
    import kopf

    from llm_operator.k8s import KubeApi

ANNOTATION_PREFIX = "inference.llmops.dev"
CATALOG_KEY = "catalog.yaml"
GATEWAY_URL_ENV = "LLM_OPERATOR_GATEWAY_URL"


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    peering: str | None = "llm-operator"  # None = standalone
    metrics_port: int = 8080
    liveness: str | None = None  # e.g. http://0.0.0.0:8081/healthz
    resync_seconds: float = 60.0
    max_concurrent_reconciles: int = 8
    scrape_interval_seconds: float = 10.0  # the autoscaler's tick: pod /metrics scrapes
    scrape_timeout_seconds: float = 2.0  # per pod
    fallback: FallbackSettings = field(default_factory=FallbackSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    catalog_file: str | None = None
    catalog_configmap: str | None = None  # NAMESPACE/NAME, key catalog.yaml
    gateway_url: str | None = None  # llm-gateway's OpenAI base URL: status.gatewayEndpoint
    # llm-gateway's Service (namespace, name): its pods' route counters -> LLMRoute lastHour
    gateway_service: tuple[str, str] | None = None
    gateway_scrape_seconds: float = 60.0

    def reconcile_settings(
        self, catalog: Catalog, inference_pools: bool = True
    ) -> ReconcileSettings:
        """`inference_pools`: whether the API server serves InferencePools (start-up check)."""
        return ReconcileSettings(
            catalog=catalog,
            render=replace(
                self.render, inference_pool=self.render.inference_pool and inference_pools
            ),
            fallback=self.fallback,
            gateway_url=self.gateway_url,
        )

    def apply_kopf_settings(self, settings: kopf.OperatorSettings) -> None:
        import kopf  # the shell only; this module is imported by the CLI too

        # Progress and the diff base in our annotations, never in status (the CRD's status
        # schema is ours); no kopf Events: the operator emits its own, on transitions only.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX
        )
        settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
        settings.posting.enabled = False
        settings.scanning.disabled = True  # no CRD watching (and no RBAC for it)
        settings.peering.mandatory = self.peering is not None
        settings.execution.max_workers = 4
        # How long kopf waits for the watch event of its own patch before it acts on the state
        # it has. Under a burst (1,000 creates) the event can lag kopf's 5 s default; kopf
        # then re-runs the handler on the stale body and patches again (measured: +3 PATCHes
        # and +2.5 reconciles per LLMDeployment at 1,000). Only delays an object whose own
        # patch event never arrives (a watch re-list), by at most this.
        settings.persistence.consistency_timeout = 30.0


async def load_catalog(config: OperatorConfig, api: KubeApi) -> Catalog:
    catalog = default_catalog()
    if config.catalog_file:
        catalog = catalog.with_overrides(Path(config.catalog_file).read_text())
    if config.catalog_configmap:
        namespace, _, name = config.catalog_configmap.partition("/")
        data = await api.read_config_map(namespace, name)
        if CATALOG_KEY in data:
            catalog = catalog.with_overrides(data[CATALOG_KEY])
    return catalog


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llm-operator",
        description="Reconcile LLMDeployments into llm-server Deployments (kopf operator).",
    )
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeat)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch cluster-wide")
    peering = p.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        default="llm-operator",
        metavar="NAME",
        help="kopf peering object for leader election (default llm-operator; needs "
        "crds/kopf.dev_peerings.yaml and the peering object)",
    )
    peering.add_argument(
        "--standalone", action="store_true", help="no peering: only for a single replica / dev"
    )
    p.add_argument("--metrics-port", type=int, default=8080, help="0 disables /metrics")
    p.add_argument("--liveness", help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    p.add_argument("--resync-seconds", type=float, default=60.0)
    p.add_argument(
        "--max-concurrent-reconciles",
        type=int,
        default=8,
        help="reconciles in flight at once; a burst of changes queues beyond this",
    )
    p.add_argument(
        "--scrape-interval-seconds",
        type=float,
        default=10.0,
        help="how often each LLMDeployment's ready pods' /metrics are scraped (autoscaler tick)",
    )
    p.add_argument(
        "--scrape-timeout-seconds",
        type=float,
        default=2.0,
        help="per-pod scrape timeout; a pod that does not answer counts as unknown load",
    )
    p.add_argument(
        "--keda-prometheus-address",
        default=RenderSettings().keda_prometheus_address,
        help="Prometheus URL in the KEDA ScaledObjects (autoscaling.mode keda)",
    )
    p.add_argument(
        "--fallback-timeout-seconds",
        type=float,
        default=300.0,
        help="how long pods may stay unschedulable before the next GPU fallback",
    )
    p.add_argument(
        "--primary-retry-seconds",
        type=float,
        default=1800.0,
        help="first probe of the primary after switching to a fallback (doubles, max 4h)",
    )
    p.add_argument("--service-monitor", action="store_true", help="render ServiceMonitors")
    p.add_argument("--network-policy", action="store_true", help="render NetworkPolicies")
    p.add_argument(
        "--network-policy-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="namespace the NetworkPolicies admit besides the pods' own (repeat); include the "
        "operator's, whose autoscaler scrapes the pods, and Prometheus'",
    )
    p.add_argument(
        "--gateway-url",
        default=os.environ.get(GATEWAY_URL_ENV) or None,
        metavar="URL",
        help="llm-gateway's OpenAI base URL, shown as status.gatewayEndpoint of every "
        f"LLMDeployment (env {GATEWAY_URL_ENV}; unset: no gatewayEndpoint)",
    )
    p.add_argument(
        "--gateway-service",
        metavar="NAMESPACE/NAME",
        help="llm-gateway's Service: its pods' /metrics (found through the Service's "
        "EndpointSlices) give each LLMRoute's status.lastHour (unset: no lastHour)",
    )
    p.add_argument(
        "--gateway-scrape-seconds",
        type=float,
        default=60.0,
        help="how often the gateway's pods are scraped for route counters",
    )
    p.add_argument("--image-repository", default=RenderSettings().image_repository)
    p.add_argument("--image-tag", default=RenderSettings().image_tag)
    add_policy_arguments(p)
    catalog = p.add_mutually_exclusive_group()
    catalog.add_argument("--catalog-file", help="GPU catalog override YAML")
    catalog.add_argument(
        "--catalog-configmap", metavar="NAMESPACE/NAME", help="ConfigMap with catalog.yaml"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    defaults = FallbackSettings()
    return OperatorConfig(
        namespaces=tuple(args.namespace),
        all_namespaces=args.all_namespaces,
        peering=None if args.standalone else args.peering,
        metrics_port=args.metrics_port,
        liveness=args.liveness,
        resync_seconds=args.resync_seconds,
        max_concurrent_reconciles=args.max_concurrent_reconciles,
        scrape_interval_seconds=args.scrape_interval_seconds,
        scrape_timeout_seconds=args.scrape_timeout_seconds,
        fallback=FallbackSettings(
            unschedulable_seconds=args.fallback_timeout_seconds,
            primary_retry_seconds=args.primary_retry_seconds,
            primary_retry_max_seconds=max(
                defaults.primary_retry_max_seconds, args.primary_retry_seconds
            ),
        ),
        render=RenderSettings(
            image_repository=args.image_repository,
            image_tag=args.image_tag,
            service_monitor=args.service_monitor,
            network_policy=args.network_policy,
            network_policy_namespaces=tuple(args.network_policy_namespace),
            keda_prometheus_address=args.keda_prometheus_address,
            pod_policy=policy_from_args(args),
        ),
        catalog_file=args.catalog_file,
        catalog_configmap=args.catalog_configmap,
        gateway_url=_gateway_url(args.gateway_url),
        gateway_service=_gateway_service(args.gateway_service),
        gateway_scrape_seconds=_positive(args.gateway_scrape_seconds, "--gateway-scrape-seconds"),
    )


def _gateway_service(value: str | None) -> tuple[str, str] | None:
    """NAMESPACE/NAME of a Service, or None; anything else stops start-up."""
    if not value:
        return None
    namespace, slash, name = value.partition("/")
    label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    if not slash or not re.fullmatch(label, namespace) or not re.fullmatch(label, name):
        raise SystemExit(f"--gateway-service must be NAMESPACE/NAME of a Service, got {value!r}")
    return namespace, name


def _positive(value: float, flag: str) -> float:
    if not value > 0:
        raise SystemExit(f"{flag} must be more than 0, got {value}")
    return value


def _gateway_url(value: str | None) -> str | None:
    """An http(s) URL without a trailing slash, or None; anything else stops start-up."""
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise SystemExit(f"--gateway-url must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")
