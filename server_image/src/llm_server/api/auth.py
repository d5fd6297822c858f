"""API keys: `Authorization: Bearer KEY` on every route but the probes', as vLLM's --api-key.

Pure ASGI, outermost, so a request without a valid key is refused before its body is read.
The matching key's identity (a hash, never the key) is left in the request's state: the
response cache partitions its entries by it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_server.api.errors import APIError

# Probes and scrapers (kubelet, Prometheus, the operator's autoscaler) carry no key.
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
STATE_KEY_ID = "api_key_id"


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def request_key_id(request: Request) -> str | None:
    """The identity of the key this request presented; None when authentication is off."""
    value = request.scope.get("state", {}).get(STATE_KEY_ID)
    return value if isinstance(value, str) else None


def invalid_api_key(message: str) -> APIError:
    return APIError(
        401,
        message,
        type="authentication_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


class APIKeyAuth:
    def __init__(
        self, app: ASGIApp, keys: Sequence[str], on_reject: Callable[[APIError], None]
    ) -> None:
        self.app = app
        # Compared as bytes: compare_digest refuses non-ASCII str.
        self.keys = [(key.encode(), key_id(key)) for key in keys]
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            await self._reject(scope, receive, send, "Missing API key: send Authorization: Bearer")
            return
        identity = self._match(token.strip())
        if identity is None:
            await self._reject(scope, receive, send, "Incorrect API key provided.")
            return
        scope.setdefault("state", {})[STATE_KEY_ID] = identity
        await self.app(scope, receive, send)

    def _match(self, token: bytes) -> str | None:
        """Every key is compared (no early exit), each in constant time."""
        found = None
        for key, identity in self.keys:
            if hmac.compare_digest(token, key):
                found = identity
        return found

    async def _reject(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        error = invalid_api_key(message)
        self.on_reject(error)
        await error.response()(scope, receive, send)
