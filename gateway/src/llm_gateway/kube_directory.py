"""The directory on a cluster: LLMDeployments and their EndpointSlices, watched.

One list-and-watch task per kind and namespace (all namespaces when none are given) keeps a
store of parsed objects; every change rebuilds the targets (kube_targets, pure) and, when they
differ, wakes the requests held in wait_changed. EndpointSlices are watched with the operator's
deployment label, which the EndpointSlice controller copies from the Service, so the gateway
never receives the cluster's other slices.

signal_demand stamps the LLMDeployment with the demand annotation (a merge patch of one
annotation: RBAC `patch` on llmdeployments), at most every DEMAND_REFRESH_SECONDS per
deployment, and not at all while a stamp that fresh is already there (another gateway
replica wrote it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import aiohttp

from llm_gateway.directory import ChangeNotifier, ModelTarget, deployment_index
from llm_gateway.kube_api import KubeApi, KubeApiError, api_from_environment
from llm_gateway.kube_targets import (
    Deployment,
    SliceEndpoints,
    build_targets,
    parse_deployment,
    slice_endpoints,
)
from llm_gateway.kube_watch import (
    RESYNC_SECONDS,
    Key,
    SkipLog,
    Store,
    Watches,
    collection_path,
    list_and_watch,
)
from llm_gateway.settings import GatewaySettings
from llm_operator.api import GROUP, PLURAL, VERSION
from llm_operator.api.demand import (
    DEMAND_ANNOTATION,
    DEMAND_REFRESH_SECONDS,
    demand_stamp,
    parse_demand_stamp,
)
from llm_operator.render.objects import DEPLOYMENT_LABEL

log = logging.getLogger(__name__)
LLMD_PATH = f"/apis/{GROUP}/{VERSION}"
SLICE_PATH = "/apis/discovery.k8s.io/v1"


class KubeDirectory:
    """Implements llm_gateway.directory.Directory from the Kubernetes API.

    Use `async with KubeDirectory(api, namespaces):` inside the gateway's event loop (it opens
    and closes `api`); `synced()` / `wait_synced` tell when the first lists are in.
    """

    def __init__(
        self,
        api: KubeApi,
        namespaces: Sequence[str] = (),
        resync_seconds: float = RESYNC_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api, self._clock, self._resync = api, clock, resync_seconds
        scopes = tuple(namespaces) or ("",)  # "" = all namespaces
        parse = SkipLog("LLMDeployment", parse_deployment)
        self._deployments = {ns: Store(parse, self._changed) for ns in scopes}
        self._slices = {ns: Store(slice_endpoints, self._changed) for ns in scopes}
        self._rebuild_scheduled = False
        self._targets: dict[str, ModelTarget] = {}
        self._by_deployment: dict[tuple[str, str], ModelTarget] = {}
        self._changes = ChangeNotifier()
        self._synced = asyncio.Event()
        self._watches = Watches()
        self._collisions_logged: set[object] = set()
        self._demand_sent: dict[Key, float] = {}  # deployment -> monotonic time of the patch

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> KubeDirectory:
        await self._api.__aenter__()
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
        await self._api.__aexit__(None, None, None)

    def start(self) -> None:
        selector = {"labelSelector": DEPLOYMENT_LABEL}
        for namespace, store in self._deployments.items():
            path = collection_path(LLMD_PATH, PLURAL, namespace)
            self._watches.start(list_and_watch(self._api, path, {}, store, self._resync))
        for namespace, store in self._slices.items():
            path = collection_path(SLICE_PATH, "endpointslices", namespace)
            self._watches.start(list_and_watch(self._api, path, selector, store, self._resync))

    async def stop(self) -> None:
        await self._watches.stop()

    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float) -> bool:
        """True once every watch has listed once (before that, a model may look unknown)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), timeout)
        return self._synced.is_set()

    # --- the Directory protocol --------------------------------------------------------------

    def get(self, model: str) -> ModelTarget | None:
        return self._targets.get(model)

    def models(self) -> list[ModelTarget]:
        return [self._targets[model] for model in sorted(self._targets)]

    def deployment(self, namespace: str, name: str) -> ModelTarget | None:
        return self._by_deployment.get((namespace, name))

    async def wait_changed(self, timeout: float) -> None:
        await self._changes.wait(timeout)

    async def signal_demand(self, target: ModelTarget) -> None:
        key = (target.namespace, target.deployment)
        now, sent = time.monotonic(), self._demand_sent.get(key)
        if sent is not None and now - sent < DEMAND_REFRESH_SECONDS:
            return
        if self._fresh_stamp_present(key):
            return
        self._demand_sent[key] = now  # before the await: concurrent holders patch once
        path = f"{collection_path(LLMD_PATH, PLURAL, target.namespace)}/{target.deployment}"
        body = {"metadata": {"annotations": {DEMAND_ANNOTATION: demand_stamp(self._clock())}}}
        try:
            await self._api.merge_patch(path, body)
        except (KubeApiError, aiohttp.ClientError, TimeoutError) as exc:
            self._demand_sent.pop(key, None)  # the next held request tries again
            log.warning("demand for %s/%s not signalled: %r", *key, exc)

    def _fresh_stamp_present(self, key: Key) -> bool:
        for store in self._deployments.values():
            deployment = store.items.get(key)
            if deployment is not None:
                stamped = parse_demand_stamp(deployment.demand_stamp)
                if stamped is None:
                    return False
                age = (self._clock() - stamped).total_seconds()
                return 0 <= age < DEMAND_REFRESH_SECONDS
        return False

    # --- keeping the targets ----------------------------------------------------------------

    def _changed(self) -> None:
        # A burst of events (a list, a rollout) costs one rebuild, on the next loop turn.
        if not self._rebuild_scheduled:
            self._rebuild_scheduled = True
            asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_scheduled = False
        if not self._synced.is_set() and all(
            s.synced for s in (*self._deployments.values(), *self._slices.values())
        ):
            self._synced.set()
        deployments: list[Deployment] = [
            d for store in self._deployments.values() for d in store.items.values()
        ]
        slices: list[SliceEndpoints] = [
            s for store in self._slices.values() for s in store.items.values()
        ]
        targets, collisions = build_targets(deployments, slices)
        for collision in collisions:
            if collision not in self._collisions_logged:
                self._collisions_logged.add(collision)
                losers = ", ".join(f"{ns}/{name}" for ns, name in collision.losers)
                log.warning(
                    "model %r is served by several LLMDeployments: routing to the oldest, "
                    "%s/%s; not to %s",
                    collision.model, *collision.winner, losers,
                )  # fmt: skip
        if targets != self._targets:
            self._targets = targets
            self._by_deployment = deployment_index(targets.values())
            self._changes.notify()


def from_settings(settings: GatewaySettings) -> KubeDirectory:
    """The directory `llm-gateway --kube` runs with: in-cluster or $KUBECONFIG credentials."""
    return KubeDirectory(api_from_environment(), settings.namespaces)
