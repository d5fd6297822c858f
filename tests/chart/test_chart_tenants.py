"""The chart's side of tenants (issue 23): the LLMTenant CRD ships with the others, and the
gateway gets --replicas-hint (its replica count: each replica enforces its share of every tenant
limit) and, with gateway.requireTenantKey, --require-tenant-key, as its own parser reads them."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
from chart_rendering import of_component, render_objects

from llm_gateway.settings import parse_settings
from llm_operator.api.tenant_crd import tenant_crd


def gateway_args(values: dict[str, Any] | None = None) -> list[str]:
    (deployment,) = [
        o for o in of_component(render_objects(values), "gateway") if o["kind"] == "Deployment"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args


def test_the_tenant_crd_is_rendered_as_generated() -> None:
    crds = [o for o in render_objects() if o["kind"] == "CustomResourceDefinition"]
    (tenants,) = [c for c in crds if c["metadata"]["name"] == "llmtenants.inference.llmops.dev"]
    assert tenants["spec"] == tenant_crd()["spec"]


def test_limits_are_split_over_the_gateway_replicas_and_keys_optional_by_default() -> None:
    settings = parse_settings(gateway_args(), environ={})
    assert settings.replicas_hint == 2 and not settings.require_tenant_key
    three = parse_settings(gateway_args({"gateway": {"replicaCount": 3}}), environ={})
    assert three.replicas_hint == 3


def test_require_tenant_key() -> None:
    args = gateway_args({"gateway": {"requireTenantKey": True}})
    assert args.count("--require-tenant-key") == 1
    assert parse_settings(args, environ={}).require_tenant_key


def test_require_tenant_key_must_be_a_boolean() -> None:
    with pytest.raises(helm.HelmValuesError, match="requireTenantKey"):
        render_objects({"gateway": {"requireTenantKey": "yes"}})
