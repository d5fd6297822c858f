"""Routes on a cluster: LLMRoutes, watched.

One list-and-watch task per namespace (all namespaces when none are given); each LLMRoute is
parsed with the operator's own model when it arrives, and every change builds a new RouteTable
that the request path reads. An invalid route is skipped (logged once per generation); two
routes claiming one public name: the first by namespace/name wins (logged once). /readyz does
not wait for the first list, so a cluster without the LLMRoute CRD or its RBAC still serves its
models (the watch logs and retries); a route name may answer 404 for the first moments.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llm_gateway.kube_api import KubeApi, api_from_environment
from llm_gateway.kube_targets import object_key
from llm_gateway.kube_watch import (
    RESYNC_SECONDS,
    SkipLog,
    Store,
    Watches,
    collection_path,
    list_and_watch,
)
from llm_gateway.routes import Route, RouteTable
from llm_gateway.settings import GatewaySettings
from llm_operator.api import GROUP, VERSION
from llm_operator.api.route import PLURAL, LLMRoute

log = logging.getLogger(__name__)
ROUTE_PATH = f"/apis/{GROUP}/{VERSION}"


def parse_route(obj: dict[str, Any]) -> Route:
    """Raises ValueError (pydantic's ValidationError is one) when the object is not valid."""
    manifest = {"metadata": obj.get("metadata") or {}, "spec": obj.get("spec") or {}}
    resource = LLMRoute.from_manifest(manifest)
    namespace, name = object_key(obj)
    return Route.of(namespace, name, resource.spec)


class KubeRoutes:
    """Implements llm_gateway.routes.RouteLookup from the Kubernetes API.

    Use `async with KubeRoutes(api, namespaces):` inside the gateway's event loop (it opens
    and closes `api`).
    """

    def __init__(
        self, api: KubeApi, namespaces: Sequence[str] = (), resync_seconds: float = RESYNC_SECONDS
    ) -> None:
        self._api, self._resync = api, resync_seconds
        scopes = tuple(namespaces) or ("",)  # "" = all namespaces
        parse = SkipLog("LLMRoute", parse_route)
        self._stores = {ns: Store(parse, self._rebuild) for ns in scopes}
        self._table = RouteTable()
        self._watches = Watches()
        self._collisions_logged: set[tuple[tuple[str, str], tuple[str, str]]] = set()

    async def __aenter__(self) -> KubeRoutes:
        await self._api.__aenter__()
        for namespace, store in self._stores.items():
            path = collection_path(ROUTE_PATH, PLURAL, namespace)
            self._watches.start(list_and_watch(self._api, path, {}, store, self._resync))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._watches.stop()
        await self._api.__aexit__(None, None, None)

    def synced(self) -> bool:
        return all(store.synced for store in self._stores.values())

    def get_route(self, model: str) -> Route | None:
        return self._table.get_route(model)

    def routes(self) -> list[Route]:
        return self._table.routes()

    def table(self) -> RouteTable:
        return self._table

    def _rebuild(self) -> None:
        routes: list[Route] = [r for s in self._stores.values() for r in s.items.values()]
        self._table = RouteTable(routes)
        for loser, winner in self._table.collisions:
            if (loser.key, winner.key) not in self._collisions_logged:
                self._collisions_logged.add((loser.key, winner.key))
                log.warning(
                    "LLMRoutes %s/%s and %s/%s both claim model %r: %s/%s wins",
                    *loser.key, *winner.key, loser.model, *winner.key,
                )  # fmt: skip


def from_settings(settings: GatewaySettings) -> KubeRoutes:
    """The routes `llm-gateway --kube` runs with: in-cluster or $KUBECONFIG credentials."""
    return KubeRoutes(api_from_environment(), settings.namespaces)
