"""The tests' side of the Kubernetes API: a small synchronous client over httpx.

Kinds are resolved to paths by the server's own discovery (so CRDs work once established);
writes go over HTTP like any client's, so the operator's watches see them. Errors keep the
API server's status and Status body, so a test can assert what a real server answers.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
TEST_MANAGER = "test"


class KubeError(Exception):
    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(f"{status} {body.get('reason', '')}: {body.get('message', body)}")
        self.status, self.body = status, dict(body)

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


class Kube:
    def __init__(self, url: str, ca_file: str, cert: tuple[str, str] | None = None,
                 token: str | None = None) -> None:  # fmt: skip
        context = ssl.create_default_context(cafile=ca_file)
        if cert is not None:
            context.load_cert_chain(*cert)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self.http = httpx.Client(base_url=url, verify=context, headers=headers, timeout=30)
        self._kinds: dict[tuple[str, str], tuple[str, bool]] = {}  # -> (plural, namespaced)

    def close(self) -> None:
        self.http.close()

    # --- raw requests -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self.http.request(
            method,
            path,
            content=None if body is None else json.dumps(body),
            headers={"Content-Type": content_type},
            params=params,
        )
        data: dict[str, Any] = response.json() if response.content else {}
        if response.status_code >= 400:
            raise KubeError(response.status_code, data)
        return data

    # --- discovery --------------------------------------------------------------------------

    def _resolve(self, api_version: str, kind: str) -> tuple[str, bool]:
        key = (api_version, kind)
        if key not in self._kinds:
            root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            for resource in self.request("GET", root).get("resources", []):
                if "/" not in resource["name"]:
                    self._kinds[(api_version, resource["kind"])] = (
                        resource["name"],
                        resource["namespaced"],
                    )
        if key not in self._kinds:
            raise KeyError(f"{kind} is not served under {api_version}")
        return self._kinds[key]

    def path(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        name: str | None = None,
        sub: str | None = None,
    ) -> str:
        plural, namespaced = self._resolve(api_version, kind)
        out = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced and namespace:
            out += f"/namespaces/{namespace}"
        out += f"/{plural}"
        return out + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def _manifest_path(self, manifest: Mapping[str, Any], with_name: bool = True) -> str:
        meta = manifest.get("metadata") or {}
        return self.path(
            manifest["apiVersion"],
            manifest["kind"],
            meta.get("namespace"),
            meta.get("name") if with_name else None,
        )

    # --- objects ----------------------------------------------------------------------------

    def apply(
        self,
        manifest: Mapping[str, Any],
        *,
        manager: str = TEST_MANAGER,
        dry_run: bool = False,
        sub: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply, as `kubectl apply --server-side --force-conflicts` does."""
        params = {"fieldManager": manager, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        path = self._manifest_path(manifest) + (f"/{sub}" if sub else "")
        return self.request("PATCH", path, manifest, content_type=APPLY, params=params)

    def create(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        params = {"dryRun": "All"} if dry_run else None
        return self.request("POST", self._manifest_path(manifest, False), manifest, params=params)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:
            return self.request("GET", self.path(api_version, kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        selector: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else None
        items = self.request("GET", self.path(api_version, kind, namespace), params=params)
        return list(items.get("items") or [])

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        sub: str | None = None,
    ) -> dict[str, Any]:
        path = self.path(api_version, kind, namespace, name, sub)
        return self.request("PATCH", path, patch, content_type=MERGE)

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        grace_seconds: int | None = None,
    ) -> None:
        params = {"propagationPolicy": "Background"}
        if grace_seconds is not None:
            params["gracePeriodSeconds"] = str(grace_seconds)
        try:
            self.request("DELETE", self.path(api_version, kind, namespace, name), params=params)
        except KubeError as exc:
            if exc.status != 404:
                raise

    def watch(
        self, path: str, resource_version: str, timeout_s: int = 60
    ) -> Iterator[dict[str, Any]]:
        """The events of one watch request on `path` from `resource_version`."""
        params = {"watch": "1", "resourceVersion": resource_version,
                  "timeoutSeconds": str(timeout_s), "allowWatchBookmarks": "true"}  # fmt: skip
        with self.http.stream("GET", path, params=params, timeout=timeout_s + 10) as response:
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)

    # --- conveniences -----------------------------------------------------------------------

    def ensure_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = dict(labels)
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})

    def wait_established(self, crd_name: str, timeout_s: float = 30.0) -> None:
        """Until the CRD serves (discovery is then re-read for its group)."""

        def established() -> bool:
            crd = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd_name)
            conditions = ((crd or {}).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_until(established, timeout_s, f"CRD {crd_name} established")
        self._kinds.clear()

    def events(self, namespace: str, involved: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.list("v1", "Event", namespace)
            if involved is None or e["involvedObject"]["name"] == involved
        ]


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll until `check()` is truthy (the API is eventually consistent; never assert time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(0.05)
