"""The gateway's client of the Kubernetes API: list, watch and merge-patch, on aiohttp.

Credentials come from the `kubernetes` package's own loaders (in-cluster service account, or
$KUBECONFIG / ~/.kube/config with its certificates, tokens and exec plugins), so the gateway
authenticates as kubectl would. The requests themselves go through aiohttp on the gateway's
event loop: a watch is a coroutine that a cancel ends at once, with no thread to join.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config import ConfigException

from llm_gateway.settings import SettingsError

MERGE_PATCH = "application/merge-patch+json"
CONNECT_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0


class KubeApiError(Exception):
    """The API server answered with an error status (`status`), or a watch sent an ERROR."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def load_configuration(kubeconfig: str | None = None) -> k8s_client.Configuration:
    """In a pod, the service account's; else `kubeconfig`, $KUBECONFIG or ~/.kube/config."""
    configuration = k8s_client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration, persist_config=False
        )
    return configuration


def _ssl_context(configuration: k8s_client.Configuration) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class KubeApi:
    """One API server; open it inside the event loop that uses it (`async with`)."""

    def __init__(self, configuration: k8s_client.Configuration) -> None:
        self._configuration = configuration
        self._host = configuration.host.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> KubeApi:
        return cls(load_configuration(kubeconfig))

    async def __aenter__(self) -> KubeApi:
        connector = aiohttp.TCPConnector(ssl=_ssl_context(self._configuration))
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        # Asked per request: an in-cluster token is re-read by the loader's refresh hook.
        headers = {"Accept": "application/json"}
        # Both loaders (in-cluster, kubeconfig token) store it as "BearerToken".
        token = self._configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeApi used outside `async with`")
        return self._session

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(
            total=REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS
        )
        async with self._open().get(
            self._host + path, params=params, headers=self._headers(), timeout=timeout
        ) as response:
            return await _json_or_raise(response)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(
            total=REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS
        )
        async with self._open().patch(
            self._host + path,
            data=json.dumps(body),
            headers=self._headers(MERGE_PATCH),
            timeout=timeout,
        ) as response:
            return await _json_or_raise(response)

    async def watch(
        self, path: str, params: Mapping[str, str], timeout_seconds: float
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch's events ({"type", "object"}) until the server ends it, after
        `timeout_seconds`; an ERROR event (e.g. 410 Gone) raises KubeApiError."""
        query = {
            **params,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, round(timeout_seconds))),
        }
        # The server closes the watch at timeoutSeconds; silence well past it is a dead link.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT_SECONDS, sock_read=timeout_seconds + 30
        )
        async with self._open().get(
            self._host + path, params=query, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status >= 400:
                await _json_or_raise(response)
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _event(json.loads(line))


def _event(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise KubeApiError(int(status.get("code") or 500), str(status.get("message") or status))
    return event


async def _json_or_raise(response: aiohttp.ClientResponse) -> dict[str, Any]:
    text = await response.text()
    if response.status >= 400:
        try:
            message = str(json.loads(text).get("message") or text)
        except (ValueError, AttributeError):
            message = text
        raise KubeApiError(response.status, message[:500])
    body: dict[str, Any] = json.loads(text)
    return body


def api_from_environment() -> KubeApi:
    """`llm-gateway --kube`'s client: in-cluster or $KUBECONFIG credentials; without any, a
    SettingsError (one line, exit 2)."""
    try:
        return KubeApi.from_environment()
    except (ConfigException, OSError) as exc:
        raise SettingsError(f"--kube: no Kubernetes credentials: {exc}") from None
