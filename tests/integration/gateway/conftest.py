"""Fixtures for the gateway integration tests; the harness is in gateway_harness.py."""

from __future__ import annotations

from gateway_harness import kube_gateway, operator_env, pod_servers, tenant_gateway

__all__ = ["kube_gateway", "operator_env", "pod_servers", "tenant_gateway"]
