"""kopf handlers: decorators and a few lines each; the work is in reconciler / plan / k8s.

- startup: kopf settings (annotation storage, no kopf status/events, server-side label
  selectors), the API client, the catalog, /metrics.
- indices of the children and pods we manage (kopf fills them before any handler runs).
- create / update / resume: one reconcile.
- a daemon per LLMDeployment: re-evaluates when its pods or children change, when a
  fallback timer is due, every resync interval, and on each autoscaler tick (after scraping
  the ready pods' /metrics).
- child DELETED events: forget and re-create; LLMDeployment DELETED: forget (the children go
  with the owner references, through Kubernetes' garbage collector); any other LLMDeployment
  event with a new demand stamp from the gateway (scale from zero) wakes its daemon.
- a daemon per LLMRoute keeps its status (route_runtime.py), woken by any LLMDeployment or
  LLMRoute event of its namespace (LLMDeployments read from an index) and after each scrape
  of the gateway (--gateway-service).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from llm_operator import metrics
from llm_operator.api.demand import DEMAND_ANNOTATION
from llm_operator.api.resource import GROUP, PLURAL, VERSION
from llm_operator.api.route import PLURAL as ROUTE_PLURAL
from llm_operator.autoscale.collector import Collector
from llm_operator.child_kinds import CHILD_KINDS, INFERENCE_POOL, POD, WATCHED
from llm_operator.k8s import KubeApi, connection_info, load_configuration
from llm_operator.plan.observed import summarize_child, summarize_pod
from llm_operator.reconciler import CHILD_INDEX_PREFIX, POD_INDEX, Runtime
from llm_operator.render.objects import DEPLOYMENT_LABEL, MANAGED_BY, MANAGED_SELECTOR
from llm_operator.route_runtime import GatewayScraper, RouteRuntime
from llm_operator.route_status import DeploymentView
from llm_operator.settings import OperatorConfig, load_catalog
from llm_operator.state.route_window import RouteWindow

logger = logging.getLogger(__name__)
LLMD = (GROUP, VERSION, PLURAL)
LLMR = (GROUP, VERSION, ROUTE_PLURAL)
LLMD_BY_NAMESPACE = "llmd_by_namespace"
# (apiVersion, plural) of every kind the operator creates (the table is child_kinds.py's).
CHILDREN = tuple((k.api_version, k.plural) for k in CHILD_KINDS)


def _owner(namespace: str | None, labels: Any) -> tuple[str, str]:
    return str(namespace), str(labels.get(DEPLOYMENT_LABEL, ""))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo.config
    config.apply_kopf_settings(settings)
    for watched in WATCHED:
        settings.watching.label_selectors[watched.api_version, watched.plural] = MANAGED_SELECTOR
    api = KubeApi.from_environment(on_request=metrics.count_request)
    catalog = await load_catalog(config, api)
    pools = await api.serves(INFERENCE_POOL.api_version, INFERENCE_POOL.plural)
    if not pools:
        logger.info("no InferencePool CRD: spec.inferencePool is not rendered (restart after)")
    memo.runtime = Runtime(
        config.reconcile_settings(catalog, inference_pools=pools),
        api,
        config.resync_seconds,
        scrape_interval=config.scrape_interval_seconds,
        collector=Collector(config.scrape_timeout_seconds),
        max_concurrent=config.max_concurrent_reconciles,
    )
    memo.routes = RouteRuntime(api, config.resync_seconds)
    if config.gateway_service is not None:
        memo.routes.window = RouteWindow()
        memo.scraper = GatewayScraper(
            api, config.gateway_service, memo.routes.window, config.gateway_scrape_seconds
        )
        memo.scraping = asyncio.get_running_loop().create_task(memo.scraper.run(memo.routes.wake))
    metrics.serve(config.metrics_port)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    return connection_info(load_configuration())


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "runtime", None) is not None:
        memo.runtime.close()
        await memo.runtime.collector.close()
    if getattr(memo, "routes", None) is not None:
        memo.routes.close()
    if getattr(memo, "scraping", None) is not None:
        memo.scraping.cancel()
        await memo.scraper.close()


async def _index_child(namespace: str | None, labels: Any, body: Any, **_: Any) -> dict[Any, Any]:
    return {_owner(namespace, labels): summarize_child(body)}


for _child in CHILD_KINDS:
    kopf.index(
        _child.api_version, _child.plural, labels=MANAGED_BY, id=CHILD_INDEX_PREFIX + _child.plural
    )(_index_child)


@kopf.index(POD.api_version, POD.plural, labels=MANAGED_BY, id=POD_INDEX)
async def _index_pod(namespace: str | None, labels: Any, body: Any, **_: Any) -> dict[Any, Any]:
    return {_owner(namespace, labels): summarize_pod(body)}


@kopf.on.resume(*LLMD)
@kopf.on.create(*LLMD)
@kopf.on.update(*LLMD)
async def reconcile(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await memo.runtime.reconcile(body, kwargs)


@kopf.daemon(*LLMD, cancellation_timeout=1.0, id="keep-reconciling")
async def keep_reconciling(body: kopf.Body, stopped: Any, memo: kopf.Memo, **kwargs: Any) -> None:
    runtime: Runtime = memo.runtime
    key = (str(body.metadata.namespace), str(body.metadata.name))
    while not stopped and not runtime.closed:
        woken = await runtime.wait(key, stopped.wait())
        if stopped or runtime.closed:
            return
        try:
            scrape = await runtime.scrape(key, kwargs)  # when the autoscaler's tick is due
            if runtime.worth_reconciling(key, woken, scrape):
                await runtime.reconcile(body, kwargs, scrape)
        except (kopf.PermanentError, kopf.TemporaryError) as exc:
            logger.debug("re-evaluation of %s/%s: %s", *key, exc)


def _child_watcher(kind: str) -> Any:
    async def on_event(
        type: str, namespace: str | None, labels: Any, name: str, memo: kopf.Memo, **_: Any
    ) -> None:
        key = _owner(namespace, labels)
        if type == "DELETED":
            memo.runtime.child_gone(key, kind, name)
        elif kind in ("Deployment", POD.kind):  # rollout and scheduling progress
            memo.runtime.wake(key)

    return on_event


for _watched in WATCHED:
    kopf.on.event(
        _watched.api_version, _watched.plural, labels=MANAGED_BY, id=f"watch-{_watched.plural}"
    )(_child_watcher(_watched.kind))


@kopf.on.event(*LLMD)
async def llmd_event(
    type: str, namespace: str | None, name: str, meta: Any, memo: kopf.Memo, **_: Any
) -> None:
    key = (str(namespace), str(name))
    if getattr(memo, "routes", None) is not None:
        memo.routes.wake(key[0])  # its routes' targets may have changed
    if type == "DELETED":
        memo.runtime.forget(key)
        metrics.forget(*key)
    elif getattr(memo, "runtime", None) is not None:
        memo.runtime.wakeups.wake_on_new_demand(
            key, meta.get("annotations", {}).get(DEMAND_ANNOTATION)
        )


@kopf.index(*LLMD, id=LLMD_BY_NAMESPACE)
async def _index_llmd(namespace: str | None, body: Any, **_: Any) -> dict[Any, Any]:
    return {str(namespace): DeploymentView.from_manifest(body)}


@kopf.daemon(*LLMR, cancellation_timeout=1.0, id="route-status")
async def keep_route_status(body: kopf.Body, stopped: Any, memo: kopf.Memo, **kwargs: Any) -> None:
    index = kwargs[LLMD_BY_NAMESPACE]
    await memo.routes.keep_status(body, stopped, lambda ns: tuple(index.get(ns, ())))


@kopf.on.event(*LLMR)
async def llmr_event(
    type: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    if getattr(memo, "routes", None) is None:
        return
    if type == "DELETED":
        memo.routes.forget((str(namespace), str(name)))
    memo.routes.wake(str(namespace))
