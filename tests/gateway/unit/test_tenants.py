"""Tenants and their keys: parsing LLMTenants and key Secrets, the digest table, bearer keys."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from llm_gateway.fair_share import Share
from llm_gateway.kube_targets import build_targets, parse_deployment
from llm_gateway.settings import SettingsError, parse_settings
from llm_gateway.tenants import (
    KeySecret,
    RecordedSpend,
    Tenant,
    TenantTable,
    bearer_key,
    parse_key_secret,
    parse_tenant,
)
from llm_operator.api.tenant import API_KEY_DATA_KEY, TENANT_LABEL


def llmt(name: str, namespace: str = "team", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "inference.llmops.dev/v1alpha1", "kind": "LLMTenant",
        "metadata": {"name": name, "namespace": namespace, "uid": "u1", "generation": 3},
        "spec": spec, "status": {"keys": 1, "bogus": "a newer operator's field"},
    }  # fmt: skip


def key_secret(name: str, tenant: str, key: str | None, namespace: str = "team") -> dict[str, Any]:
    data = {} if key is None else {API_KEY_DATA_KEY: base64.b64encode(key.encode()).decode()}
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
        "metadata": {"name": name, "namespace": namespace, "labels": {TENANT_LABEL: tenant}},
    }  # fmt: skip


def test_parse_tenant_with_every_limit() -> None:
    tenant = parse_tenant(
        llmt("web", models=["chat", "embed"],
             limits={"requestsPerMinute": 600, "tokensPerMinute": 200000},
             budget={"dollars": "25.50", "period": "month"}, weight=3, priority="high")
    )  # fmt: skip
    assert tenant == Tenant(
        namespace="team", name="web", models=frozenset({"chat", "embed"}),
        requests_per_minute=600, tokens_per_minute=200000, budget_dollars=25.5,
        budget_period="month", weight=3, priority="high",
    )  # fmt: skip
    assert tenant.share == Share(("team", "web"), 3, "high")
    assert tenant.allows("chat") and not tenant.allows("other")


def test_parse_tenant_without_limits_allows_every_model() -> None:
    tenant = parse_tenant(llmt("open"))
    assert tenant.allows("anything")
    assert (tenant.requests_per_minute, tenant.tokens_per_minute, tenant.budget_dollars) == (
        None, None, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [{"limits": {"requestsPerMinute": 0}}, {"budget": {"dollars": "-1", "period": "day"}},
     {"budget": {"dollars": "5", "period": "week"}}, {"models": ["a", "a"]}],
)  # fmt: skip
def test_an_invalid_tenant_is_a_value_error(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        parse_tenant(llmt("bad", **spec))


def test_key_secret_keeps_only_the_digest_of_the_stripped_key() -> None:
    secret = parse_key_secret(key_secret("web-key", "web", "sk-team-web\n"))
    assert secret == KeySecret("team", "web-key", "web", hashlib.sha256(b"sk-team-web").digest())
    assert "sk-team-web" not in repr(secret)


@pytest.mark.parametrize(
    "obj",
    [
        key_secret("k", "web", None),  # no api-key entry
        key_secret("k", "web", "   "),  # an empty key
        key_secret("k", "", "sk"),  # no tenant named
        {"metadata": {"name": "k", "namespace": "team"}, "data": {API_KEY_DATA_KEY: "c2s="}},
        {**key_secret("k", "web", "x"), "data": {API_KEY_DATA_KEY: "not base64!"}},
    ],
)
def test_secrets_without_a_usable_key_are_ignored(obj: dict[str, Any]) -> None:
    assert parse_key_secret(obj) is None


def test_table_finds_tenants_by_key() -> None:
    web, batch = parse_tenant(llmt("web")), parse_tenant(llmt("batch"))
    secrets = [
        parse_key_secret(key_secret("web-1", "web", "sk-web-1")),
        parse_key_secret(key_secret("web-2", "web", "sk-web-2")),
        parse_key_secret(key_secret("batch", "batch", "sk-batch")),
    ]
    table = TenantTable([web, batch], [s for s in secrets if s is not None])
    assert table.lookup("sk-web-1") == web and table.lookup("sk-web-2") == web
    assert table.lookup("sk-batch") == batch
    assert table.lookup("sk-web-") is None and table.lookup("") is None
    assert table.keys_per_tenant == {("team", "web"): 2, ("team", "batch"): 1}


def test_a_key_of_a_missing_tenant_or_of_another_namespace_is_refused() -> None:
    web = parse_tenant(llmt("web"))
    secrets = [
        parse_key_secret(key_secret("ghost", "ghost", "sk-ghost")),
        # Same tenant name, other namespace: a Secret names a tenant of its own namespace.
        parse_key_secret(key_secret("web", "web", "sk-other-ns", namespace="other")),
    ]
    table = TenantTable([web], [s for s in secrets if s is not None])
    assert table.lookup("sk-ghost") is None and table.lookup("sk-other-ns") is None


def test_one_key_in_two_tenants_belongs_to_the_first_and_is_reported() -> None:
    a, b = parse_tenant(llmt("a")), parse_tenant(llmt("b"))
    secrets = [
        parse_key_secret(key_secret("b-key", "b", "sk-shared")),
        parse_key_secret(key_secret("a-key", "a", "sk-shared")),
    ]
    table = TenantTable([a, b], [s for s in secrets if s is not None])
    assert table.lookup("sk-shared") == a
    assert [(s.secret, owner.name) for s, owner in table.shared] == [("b-key", "a")]


@pytest.mark.parametrize(
    ("header", "key"),
    [("Bearer sk-1", "sk-1"), ("bearer  sk-1 ", "sk-1"), ("Basic abc", None), ("Bearer ", None),
     (None, None), ("sk-1", None)],
)  # fmt: skip
def test_bearer_key(header: str | None, key: str | None) -> None:
    assert bearer_key(header) == key


@pytest.mark.parametrize(
    ("cost", "price"),
    [({"dollarsPerMillionTokens": 0.42}, 0.42), ({"dollarsPerMillionTokens": 3}, 3.0),
     ({"dollarsPerHour": 1.2}, None), ({"dollarsPerMillionTokens": "x"}, None),
     ({"dollarsPerMillionTokens": -1}, None), (None, None)],
)  # fmt: skip
def test_targets_carry_the_deployments_price_from_its_status(
    cost: dict[str, Any] | None, price: float | None
) -> None:
    manifest = {
        "metadata": {"name": "chat", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00Z"},
        "spec": {"model": {"uri": "hf://org/tiny"}, "accelerator": {"type": "cpu"}},
        "status": {"phase": "Ready", "cost": cost, "someFutureField": 1},
    }  # fmt: skip
    deployment = parse_deployment(manifest)
    targets, _ = build_targets([deployment], [])
    (target,) = targets.values()
    assert target.dollars_per_million_tokens == price


def test_tenant_settings_from_flags_and_environment() -> None:
    settings = parse_settings(["--kube", "--require-tenant-key", "--replicas-hint", "3"], {})
    assert settings.require_tenant_key and settings.replicas_hint == 3
    env = {"LLM_GATEWAY_REQUIRE_TENANT_KEY": "true", "LLM_GATEWAY_REPLICAS_HINT": "2"}
    settings = parse_settings(["--kube"], env)
    assert settings.require_tenant_key and settings.replicas_hint == 2
    assert not parse_settings(["--kube"], {}).require_tenant_key
    with pytest.raises(SettingsError, match="replicas_hint"):
        parse_settings(["--kube", "--replicas-hint", "0"], {})
    with pytest.raises(SettingsError, match="needs --kube"):
        parse_settings(["--static-models", "m.yaml", "--require-tenant-key"], {})


def test_status_spend_is_read_alone_and_a_malformed_one_is_ignored() -> None:
    obj = llmt("web")
    obj["status"]["spend"] = {"periodStart": "2026-12-04T00:00:00Z", "dollars": 1.25}
    recorded = parse_tenant(obj).recorded
    assert recorded == RecordedSpend(datetime(2026, 12, 4, tzinfo=UTC).timestamp(), 1.25)
    assert recorded.as_status() == obj["status"]["spend"]
    for broken in ({"periodStart": "yesterday", "dollars": 1}, {"dollars": 1},
                   {"periodStart": "2026-12-04T00:00:00", "dollars": 1},  # no time zone
                   {"periodStart": "2026-12-04T00:00:00Z", "dollars": -1}, "spent"):  # fmt: skip
        obj["status"]["spend"] = broken
        assert parse_tenant(obj).recorded is None  # the tenant itself stays valid
