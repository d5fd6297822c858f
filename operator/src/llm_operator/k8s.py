"""The only module that calls the Kubernetes API: it executes Plans.

Server-side apply (`application/apply-patch+yaml`, field manager `llm-operator`, force) for
children; a JSON merge patch of the status subresource, once per reconcile and only when the
Plan says it changed; core/v1 Events. The official `kubernetes` client does the HTTP (auth,
kubeconfig or in-cluster token with refresh, TLS); its calls block, so they run on a small
thread pool and the kopf event loop never waits on a socket.

Server-side apply creates a missing object (RBAC: `create` as well as `patch`); a 404 on
apply means the namespace or the resource type is missing.

API errors map to typed errors by what they mean: a conflict, throttling, an unreachable or
unavailable server is temporary (kopf.TemporaryError with a delay); the API server refusing a
child we rendered (422/400, or a 500 "failed to convert" for an unparseable quantity in
`server.podTemplate`) is permanent (RejectedError: Failed + Event, no retry until the spec
changes); a 403 is ForbiddenError (Degraded + Event, retried slowly until RBAC is fixed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf
import kubernetes

from llm_operator.api.resource import API_VERSION, KIND, PLURAL
from llm_operator.api.route import API_VERSION as ROUTE_API_VERSION
from llm_operator.api.route import PLURAL as ROUTE_PLURAL
from llm_operator.child_kinds import CHILD_KINDS, EVENT, PLURALS
from llm_operator.plan.timefmt import format_time
from llm_operator.plan.types import FIELD_MANAGER, ChildRef, EventSpec, Plan

logger = logging.getLogger(__name__)

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
CONFLICT_DELAY = 2.0
UNAVAILABLE_DELAY = 10.0
FORBIDDEN_DELAY = 60.0


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class RejectedError(Exception):
    """The API server refused an object we rendered (422/400, or a 500 converting it): the
    spec must change."""


class ForbiddenError(Exception):
    """RBAC refused a request (403): the operator's role must change; retried slowly."""


def path(
    api_version: str,
    plural: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    out = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        out += f"/namespaces/{namespace}"
    out += f"/{plural}"
    if name:
        out += f"/{name}"
    if subresource:
        out += f"/{subresource}"
    return out


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster service account first, else $KUBECONFIG (read now) / ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0],
            client_configuration=configuration,
        )
    return configuration


def connection_info(configuration: kubernetes.client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the same configuration our client uses (one source of truth)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or ""
    scheme, _, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class KubeApi:
    """A thin async facade over the official client; counts its requests by verb."""

    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        *,
        workers: int = 16,
        field_manager: str = FIELD_MANAGER,
        on_request: Callable[[str, str], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        configuration.connection_pool_maxsize = workers
        self._client = kubernetes.client.ApiClient(configuration)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="k8s-api")
        self.field_manager = field_manager
        self.timeout = timeout
        self.requests: Counter[str] = Counter()
        self._on_request = on_request
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()

    @classmethod
    def from_environment(cls, **kwargs: Any) -> KubeApi:
        return cls(load_configuration(), **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()  # type: ignore[no-untyped-call]

    async def call(
        self,
        method: str,
        url_path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        client, timeout = self._client, self.timeout

        def send() -> tuple[int, bytes]:
            serialized = client.param_serialize(
                method,
                url_path,
                query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = client.call_api(*serialized, _request_timeout=timeout)
            return response.status, response.read()  # type: ignore[no-untyped-call]

        verb = "apply" if content_type == APPLY else method.lower()
        self.requests[verb] += 1
        if self._on_request is not None:
            self._on_request(verb, url_path.rsplit("/", 1)[0])
        try:
            status, data = await asyncio.get_running_loop().run_in_executor(self._pool, send)
        except (OSError, kubernetes.client.exceptions.OpenApiException) as exc:
            raise ApiError(0, "Unreachable", str(exc)) from exc
        if status >= 400:
            try:
                payload = json.loads(data)
            except ValueError:
                payload = {}
            reason = str(payload.get("reason") or "")
            raise ApiError(status, reason, str(payload.get("message") or data[:200]))
        return json.loads(data) if data else None

    async def serves(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `api_version` (discovery: open to every
        authenticated user); False when the group/version is absent."""
        try:
            served = await self.call("GET", f"/apis/{api_version}") or {}
        except ApiError as exc:
            if exc.status in (403, 404, 503):
                return False
            raise
        return plural in {r.get("name") for r in served.get("resources") or []}

    # --- children ---------------------------------------------------------------------------

    async def apply(self, manifest: Mapping[str, Any]) -> None:
        api_version, meta = manifest["apiVersion"], manifest["metadata"]
        plural = PLURALS[(api_version, manifest["kind"])]
        namespace = meta.get("namespace")
        query = {"fieldManager": self.field_manager, "force": "true"}
        target = path(api_version, plural, namespace, meta["name"])
        await self.call("PATCH", target, query=query, body=manifest, content_type=APPLY)

    async def list_children(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The children matching `selector`, read from the API server (not kopf's indices)."""
        found: list[dict[str, Any]] = []
        for kind in CHILD_KINDS:
            query = {"labelSelector": selector}
            try:
                listed = await self.call(
                    "GET", path(kind.api_version, kind.plural, namespace), query=query
                )
            except ApiError as exc:
                if exc.status == 404:  # the kind is not installed (KEDA, Prometheus Operator)
                    continue
                raise _typed(exc) from exc
            for item in (listed or {}).get("items") or []:  # list items carry no kind
                found.append({**item, "apiVersion": kind.api_version, "kind": kind.kind})
        return found

    async def delete(self, ref: ChildRef) -> None:
        plural = PLURALS[(ref.api_version, ref.kind)]
        target = path(ref.api_version, plural, ref.namespace, ref.name)
        try:
            await self.call("DELETE", target, query={"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status != 404:
                raise

    # --- the LLMDeployment ------------------------------------------------------------------

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        target = path(API_VERSION, PLURAL, namespace, name, "status")
        await self.call("PATCH", target, body={"status": patch}, content_type=MERGE)

    async def post_event(self, owner: Mapping[str, Any], event: EventSpec) -> None:
        meta = owner["metadata"]
        now = datetime.now(tz=UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{time.time_ns():x}{uuid.uuid4().hex[:4]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": self._instance,
            "firstTimestamp": format_time(now),
            "lastTimestamp": format_time(now),
            "count": 1,
        }
        await self.call("POST", path(EVENT.api_version, EVENT.plural, meta["namespace"]), body=body)

    # --- LLMRoutes (route_runtime.py) -------------------------------------------------------

    async def patch_route_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        target = path(ROUTE_API_VERSION, ROUTE_PLURAL, namespace, name, "status")
        await self.call("PATCH", target, body={"status": patch}, content_type=MERGE)

    async def list_endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The EndpointSlices of a Service (the gateway's, whose pods' /metrics we scrape)."""
        query = {"labelSelector": f"kubernetes.io/service-name={service}"}
        listed = await self.call(
            "GET", path("discovery.k8s.io/v1", "endpointslices", namespace), query=query
        )
        return list((listed or {}).get("items") or [])

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        body = await self.call("GET", path("v1", "configmaps", namespace, name))
        data: dict[str, str] = (body or {}).get("data") or {}
        return data

    # --- executing a plan -------------------------------------------------------------------

    async def execute(self, plan: Plan, owner: Mapping[str, Any]) -> list[str]:
        """Apply, prune, emit Events, write status; returns the keys of children applied.

        Events go out before the status: a crash in between repeats an Event on the next
        reconcile (Events are at-least-once) rather than losing it, because the status is
        what says a transition has been reported.

        Raises kopf.TemporaryError for what a retry can fix, RejectedError when the API
        server refuses a rendered child (the caller turns it into Failed + PermanentError)
        and ForbiddenError for a 403 (the caller reports it and retries slowly).
        """
        meta = owner["metadata"]
        applied: list[str] = []
        try:
            for manifest in plan.apply:
                await self.apply(manifest)
                applied.append(f"{manifest['kind']}/{manifest['metadata']['name']}")
            for ref in plan.delete:
                await self.delete(ref)
            for event in plan.events:
                try:
                    await self.post_event(owner, event)
                except ApiError as exc:  # best effort: never fail a reconcile on an Event
                    logger.warning("could not post event %s: %s", event.reason, exc)
            if plan.status_patch is not None:
                await self.patch_status(meta["namespace"], meta["name"], plan.status_patch)
        except ApiError as exc:
            raise _typed(exc) from exc
        return applied


# The API server answers 500, not 422, when it cannot even decode an object we sent (an
# unparseable quantity in server.podTemplate): no retry can fix that, only a new spec.
CONVERSION_FAILURES = ("failed to convert new object", "unable to convert unstructured object")


def _typed(exc: ApiError) -> Exception:
    """What an API error means: the spec (permanent), RBAC (a condition, slow retries) or
    the server's state right now (temporary, retried with a delay)."""
    if exc.status in (400, 422):
        return RejectedError(exc.message)
    if exc.status == 500 and any(text in exc.message for text in CONVERSION_FAILURES):
        return RejectedError(exc.message)
    if exc.status == 403:
        return ForbiddenError(exc.message)
    if exc.status == 409:
        return kopf.TemporaryError(f"conflict: {exc.message}", delay=CONFLICT_DELAY)
    if exc.status == 404:
        return kopf.TemporaryError(
            f"not found (namespace or CRD missing?): {exc.message}", delay=FORBIDDEN_DELAY
        )
    return kopf.TemporaryError(f"API unavailable: {exc}", delay=UNAVAILABLE_DELAY)


class ClusterUnreachable(Exception):
    """No kubeconfig, or its API server does not answer."""


def dry_run_create(manifests: list[Mapping[str, Any]]) -> list[str | None]:
    """`llmops validate --server`: a server-side dry-run create of each manifest (strict field
    validation, as kubectl) in the cluster of $KUBECONFIG; per manifest the API server's
    refusal, or None when it would admit it. Raises ClusterUnreachable."""
    try:
        configuration = load_configuration()
        contexts = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
        )
        default_namespace = str((contexts[1] or {}).get("context", {}).get("namespace") or "")
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise ClusterUnreachable(f"no cluster configured: {exc}") from exc
    api = KubeApi(configuration, workers=1, timeout=10.0)

    async def run() -> list[str | None]:
        out: list[str | None] = []
        for manifest in manifests:
            namespace = (manifest.get("metadata") or {}).get("namespace") or default_namespace
            target = path(API_VERSION, PLURAL, namespace or "default")
            query = {"dryRun": "All", "fieldValidation": "Strict"}
            try:
                await api.call("POST", target, query=query, body=manifest)
                out.append(None)
            except ApiError as exc:
                if exc.status == 0 or exc.status >= 500:
                    raise ClusterUnreachable(f"{configuration.host}: {exc}") from exc
                out.append(exc.message)
        return out

    try:
        return asyncio.run(run())
    finally:
        api.close()
