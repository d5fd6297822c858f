"""Tenants and their API keys, as the gateway keeps them: pure.

LLMTenants are parsed with the operator's own model; each key Secret (labelled with its
tenant's name, the key in `data.api-key`) becomes the SHA-256 digest of its key. Only digests
are kept, and a request's key is hashed and looked up by digest: the key itself never stays in
memory past the request and is never logged. A key whose tenant is missing (or invalid) is
unknown, so a broken tenant fails closed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from llm_gateway.fair_share import Share
from llm_operator.api.tenant import API_KEY_DATA_KEY, TENANT_LABEL, LLMTenant, Priority

BEARER = "bearer "
BUCKET_BYTES = 4  # of the digest: the lookup's index


@dataclass(frozen=True)
class RecordedSpend:
    """status.spend: what every gateway replica together has spent in a budget period."""

    period_start: float  # epoch seconds of the UTC day or month it belongs to
    dollars: float

    @property
    def key(self) -> tuple[float, float]:
        """Later periods, then more spend, are newer (spend only grows within a period)."""
        return (self.period_start, self.dollars)

    def as_status(self) -> dict[str, object]:
        start = datetime.fromtimestamp(self.period_start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"periodStart": start, "dollars": self.dollars}


def recorded_spend(obj: Mapping[str, Any]) -> RecordedSpend | None:
    """An LLMTenant's status.spend, read alone (a status the model cannot parse must not hide
    the tenant); None when absent or malformed."""
    spend = (obj.get("status") or {}).get("spend")
    if not isinstance(spend, dict):
        return None
    try:
        start = datetime.fromisoformat(str(spend["periodStart"]).replace("Z", "+00:00"))
        dollars = float(spend["dollars"])
    except (KeyError, ValueError, TypeError):
        return None
    if start.tzinfo is None or not dollars >= 0:
        return None
    return RecordedSpend(start.timestamp(), dollars)


@dataclass(frozen=True)
class Tenant:
    """What the gateway enforces for one LLMTenant."""

    namespace: str
    name: str
    models: frozenset[str]  # served model names it may call; empty = all
    requests_per_minute: int | None
    tokens_per_minute: int | None
    budget_dollars: float | None  # per period, over all gateway replicas
    budget_period: str  # "day" | "month" (UTC)
    weight: int = 1  # its share of a saturated model
    priority: Priority = "normal"  # who is shed first from a full queue: low, then normal
    recorded: RecordedSpend | None = None  # status.spend, as last seen

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def share(self) -> Share:
        return Share(self.key, self.weight, self.priority)

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


@dataclass(frozen=True)
class KeySecret:
    """One key Secret: whose key it is, and the key's digest."""

    namespace: str
    secret: str
    tenant: str
    digest: bytes


def parse_tenant(obj: Mapping[str, Any]) -> Tenant:
    """Raises ValueError (pydantic's ValidationError is one) when the object is not valid."""
    manifest = {"metadata": obj.get("metadata") or {}, "spec": obj.get("spec") or {}}
    resource = LLMTenant.from_manifest(manifest)
    spec = resource.spec
    return Tenant(
        namespace=str(resource.metadata.namespace or ""),
        name=resource.metadata.name,
        models=frozenset(spec.models),
        requests_per_minute=spec.limits.requests_per_minute,
        tokens_per_minute=spec.limits.tokens_per_minute,
        budget_dollars=None if spec.budget is None else float(spec.budget.amount),
        budget_period="day" if spec.budget is None else spec.budget.period,
        weight=spec.weight,
        priority=spec.priority,
        recorded=recorded_spend(obj),
    )


def key_digest(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()


def parse_key_secret(obj: Mapping[str, Any]) -> KeySecret | None:
    """The Secret's key digest, or None when it has no tenant label or no usable key."""
    meta = obj.get("metadata") or {}
    tenant = (meta.get("labels") or {}).get(TENANT_LABEL)
    encoded = (obj.get("data") or {}).get(API_KEY_DATA_KEY)
    if not tenant or not isinstance(encoded, str):
        return None
    try:
        # `echo key | base64` leaves a newline: keys are compared without surrounding spaces.
        api_key = base64.b64decode(encoded, validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not api_key:
        return None
    namespace = str(meta.get("namespace") or "")
    return KeySecret(namespace, str(meta.get("name") or ""), str(tenant), key_digest(api_key))


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    if authorization is None or authorization[: len(BEARER)].lower() != BEARER:
        return None
    return authorization[len(BEARER) :].strip() or None


class TenantLookup(Protocol):
    def lookup(self, api_key: str) -> Tenant | None: ...


class TenantTable:
    """Key digests to tenants; immutable once built (a change builds a new table).

    Found by the digest's first bytes, then compared in full with hmac.compare_digest: how long
    a lookup takes tells nothing about a key (timing could only reveal a digest's prefix).
    """

    def __init__(self, tenants: Iterable[Tenant] = (), secrets: Iterable[KeySecret] = ()):
        by_name = {t.key: t for t in tenants}
        self.tenants: tuple[Tenant, ...] = tuple(sorted(by_name.values(), key=lambda t: t.key))
        self._buckets: dict[bytes, list[tuple[bytes, Tenant]]] = {}
        self.shared: list[tuple[KeySecret, Tenant]] = []  # one key, several tenants: first wins
        self.keys_per_tenant: dict[tuple[str, str], int] = {}
        for secret in sorted(secrets, key=lambda s: (s.namespace, s.tenant, s.secret)):
            tenant = by_name.get((secret.namespace, secret.tenant))
            if tenant is None:
                continue  # no such tenant (yet, or not valid): the key is not accepted
            self.keys_per_tenant[tenant.key] = self.keys_per_tenant.get(tenant.key, 0) + 1
            known = self._find(secret.digest)
            if known is None:
                bucket = self._buckets.setdefault(secret.digest[:BUCKET_BYTES], [])
                bucket.append((secret.digest, tenant))
            elif known != tenant:
                self.shared.append((secret, known))

    def _find(self, digest: bytes) -> Tenant | None:
        for known_digest, tenant in self._buckets.get(digest[:BUCKET_BYTES], ()):
            if hmac.compare_digest(known_digest, digest):
                return tenant
        return None

    def lookup(self, api_key: str) -> Tenant | None:
        return self._find(key_digest(api_key))
