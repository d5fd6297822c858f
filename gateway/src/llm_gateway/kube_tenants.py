"""Tenants on a cluster: LLMTenants and their key Secrets, watched.

One list-and-watch task per kind and namespace (all namespaces when none are given). Secrets
are watched with the tenant label only, so the gateway never receives the cluster's other
Secrets; of those, only the key's SHA-256 digest is kept (tenants.py). Every change builds a
new TenantTable, which the request path reads: a deleted Secret stops its key within the watch
latency, and a full relist every RESYNC_SECONDS repairs a lost event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from llm_gateway.kube_api import KubeApi, KubeApiError, api_from_environment
from llm_gateway.kube_watch import (
    RESYNC_SECONDS,
    SkipLog,
    Store,
    Watches,
    collection_path,
    list_and_watch,
)
from llm_gateway.settings import GatewaySettings
from llm_gateway.tenants import (
    KeySecret,
    RecordedSpend,
    Tenant,
    TenantTable,
    parse_key_secret,
    parse_tenant,
    recorded_spend,
)
from llm_operator.api import GROUP, VERSION
from llm_operator.api.tenant import PLURAL, TENANT_LABEL

log = logging.getLogger(__name__)
TENANT_PATH = f"/apis/{GROUP}/{VERSION}"
SECRET_PATH = "/api/v1"
CONFLICT_ATTEMPTS = 5  # other gateway replicas writing the same tenant's spend at once


class KubeTenants:
    """Implements llm_gateway.tenants.TenantLookup from the Kubernetes API.

    Use `async with KubeTenants(api, namespaces):` inside the gateway's event loop (it opens
    and closes `api`).
    """

    def __init__(
        self, api: KubeApi, namespaces: Sequence[str] = (), resync_seconds: float = RESYNC_SECONDS
    ) -> None:
        self._api, self._resync = api, resync_seconds
        scopes = tuple(namespaces) or ("",)  # "" = all namespaces
        parse = SkipLog("LLMTenant", parse_tenant, note=" (its keys are refused)")
        self._tenants = {ns: Store(parse, self._rebuild) for ns in scopes}
        self._secrets = {ns: Store(parse_key_secret, self._rebuild) for ns in scopes}
        self._table = TenantTable()
        self._watches = Watches()
        self._shared_logged: set[tuple[str, str]] = set()

    async def __aenter__(self) -> KubeTenants:
        await self._api.__aenter__()
        for namespace, store in self._tenants.items():
            path = collection_path(TENANT_PATH, PLURAL, namespace)
            self._watches.start(list_and_watch(self._api, path, {}, store, self._resync))
        selector = {"labelSelector": TENANT_LABEL}  # the label exists: key Secrets only
        for namespace, store in self._secrets.items():
            path = collection_path(SECRET_PATH, "secrets", namespace)
            self._watches.start(list_and_watch(self._api, path, selector, store, self._resync))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._watches.stop()
        await self._api.__aexit__(None, None, None)

    def synced(self) -> bool:
        return all(s.synced for s in (*self._tenants.values(), *self._secrets.values()))

    def lookup(self, api_key: str) -> Tenant | None:
        return self._table.lookup(api_key)

    def table(self) -> TenantTable:
        return self._table

    async def record_spend(
        self, tenant: Tenant, period_start: float, dollars: float
    ) -> RecordedSpend:
        """Add `dollars` to the tenant's status.spend for the period starting at
        `period_start` (a new period starts from them): read, then write on the condition that
        nobody wrote in between (resourceVersion), retried on a conflict."""
        path = f"{TENANT_PATH}/namespaces/{tenant.namespace}/{PLURAL}/{tenant.name}"
        for _ in range(CONFLICT_ATTEMPTS):
            current = await self._api.get(path)
            known = recorded_spend(current)
            if known is not None and known.period_start > period_start:
                return known  # another replica is in the next period already: this one is over
            same = known is not None and known.period_start == period_start
            total = RecordedSpend(period_start, (known.dollars if same and known else 0) + dollars)
            version = current["metadata"]["resourceVersion"]
            body = {
                "metadata": {"resourceVersion": version},
                "status": {"spend": total.as_status()},
            }
            try:
                await self._api.merge_patch(path + "/status", body)
            except KubeApiError as exc:
                if exc.status == 409:
                    continue  # written in between: read again
                raise
            return total
        raise KubeApiError(409, f"status.spend of {tenant.namespace}/{tenant.name} kept changing")

    def _rebuild(self) -> None:
        tenants: list[Tenant] = [t for s in self._tenants.values() for t in s.items.values()]
        secrets: list[KeySecret] = [k for s in self._secrets.values() for k in s.items.values()]
        self._table = TenantTable(tenants, secrets)
        for secret, owner in self._table.shared:
            if (secret.namespace, secret.secret) not in self._shared_logged:
                self._shared_logged.add((secret.namespace, secret.secret))
                log.warning(
                    "Secret %s/%s holds the same key as one of tenant %s/%s: the key is %s/%s's",
                    secret.namespace, secret.secret, owner.namespace, owner.name,
                    owner.namespace, owner.name,
                )  # fmt: skip


def from_settings(settings: GatewaySettings) -> KubeTenants:
    """The tenants `llm-gateway --kube` runs with: in-cluster or $KUBECONFIG credentials."""
    return KubeTenants(api_from_environment(), settings.namespaces)
