"""KubeTenants' view, fed as its watches feed it (lists, then events), without an API server."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from test_tenants import key_secret, llmt

from llm_gateway.kube_api import KubeApi
from llm_gateway.kube_tenants import KubeTenants


def view(*namespaces: str) -> Any:
    api = KubeApi.__new__(KubeApi)  # never opened: the stores are fed by hand below
    return KubeTenants(api, namespaces)


def test_keys_follow_tenant_and_secret_events() -> None:
    tenants = view("team")
    store_t, store_s = tenants._tenants["team"], tenants._secrets["team"]
    assert not tenants.synced()
    store_t.replace([llmt("web")])
    store_s.replace([key_secret("web-key", "web", "sk-web")])
    assert tenants.synced()
    assert tenants.lookup("sk-web") is not None
    assert tenants.table().keys_per_tenant == {("team", "web"): 1}

    store_s.upsert(key_secret("web-key", "web", "sk-rotated"))  # the key rotated in place
    assert tenants.lookup("sk-web") is None and tenants.lookup("sk-rotated") is not None
    store_s.remove(key_secret("web-key", "web", None))  # deleted: revoked
    assert tenants.lookup("sk-rotated") is None


def test_an_invalid_tenant_refuses_its_keys_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenants = view("team")
    tenants._secrets["team"].replace([key_secret("web-key", "web", "sk-web")])
    bad = llmt("web", limits={"requestsPerMinute": 0})
    with caplog.at_level(logging.WARNING, logger="llm_gateway.kube_tenants"):
        tenants._tenants["team"].replace([bad])
        tenants._tenants["team"].upsert(bad)
    assert tenants.lookup("sk-web") is None
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "sk-web" not in caplog.text
    tenants._tenants["team"].upsert(llmt("web"))  # fixed
    assert tenants.lookup("sk-web") is not None


def test_a_key_shared_by_two_tenants_is_logged_once_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenants = view("team")
    tenants._tenants["team"].replace([llmt("a"), llmt("b")])
    with caplog.at_level(logging.WARNING, logger="llm_gateway.kube_tenants"):
        tenants._secrets["team"].replace(
            [key_secret("a-key", "a", "sk-shared"), key_secret("b-key", "b", "sk-shared")]
        )
        tenants._secrets["team"].upsert(key_secret("b-key", "b", "sk-shared"))
    found = tenants.lookup("sk-shared")
    assert found is not None and found.name == "a"
    warnings = [r for r in caplog.records if "same key" in r.getMessage()]
    assert len(warnings) == 1 and "sk-shared" not in caplog.text
