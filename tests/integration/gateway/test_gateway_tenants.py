"""Tenants through the gateway on the real control plane (issue 23): LLMTenants and key Secrets
watched by the gateway (KubeTenants), a REAL llm-server pod behind it (the operator's
Deployment, the fake kubelet), the official `openai` client.

With --require-tenant-key: a tenant's key is served (200) and counted; a wrong key is refused
(401); deleting the key's Secret revokes it; a model outside the tenant's list is refused
(403); a tenant over its requests or tokens per minute gets 429 with Retry-After; a tenant over
its daily budget gets 429 `budget_day`, also from a restarted gateway (the spend is in the
tenant's status.spend); and the chargeback counters equal the tokens the pod
itself counted for the requests sent (its vllm:*_tokens_total), streamed or not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest
from gateway_harness import cpu_llmd, key_secret, pod_metric, serving_target, tenant
from gateway_thread import RunningGateway
from kube_client import Kube, wait_until
from llm_server_runtime import LlmServerRuntime
from operator_thread import operator_config, running_operator

API = "inference.llmops.dev/v1alpha1"
MODEL = "ledger-chat"
PRICE = 1000.0  # $ per 1M tokens: a tenth of a cent a token, so a budget runs out quickly
KEYS = {"web": "sk-web-0123456789", "metered": "sk-metered-abc", "capped": "sk-capped-xyz",
        "elsewhere": "sk-elsewhere-42", "wordy": "sk-wordy-777"}  # fmt: skip


def spent_in_status(kube: Kube, namespace: str, name: str) -> float | None:
    found = kube.get(API, "LLMTenant", name, namespace) or {}
    return ((found.get("status") or {}).get("spend") or {}).get("dollars")


def client(gateway: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=120)


def ask(gateway: RunningGateway, key: str, prompt: str, **extra: Any) -> Any:
    return client(gateway, key).completions.create(
        model=MODEL, prompt=prompt, max_tokens=6, **extra
    )


def test_tenant_keys_limits_budgets_and_chargeback(
    kube: Kube,
    namespace: str,
    nodes: Any,
    operator_env: None,
    pod_servers: LlmServerRuntime,
    tenant_gateway: Callable[..., Any],
) -> None:
    nodes(f"{namespace}-cpu")
    kube.create(tenant(namespace, "web", models=[MODEL]))
    kube.create(tenant(namespace, "metered", limits={"requestsPerMinute": 2}))
    kube.create(tenant(namespace, "capped", budget={"dollars": "0.01", "period": "day"}))
    kube.create(tenant(namespace, "elsewhere", models=["another-model"]))
    # Ten tokens a minute: one request (more than ten tokens) empties the bucket for a minute.
    kube.create(tenant(namespace, "wordy", limits={"tokensPerMinute": 10}))
    for name, key in KEYS.items():
        kube.create(key_secret(namespace, name, key))

    with tenant_gateway(require_tenant_key=True) as (gateway, tenants):
        with running_operator(operator_config(namespace)):
            kube.create(cpu_llmd(namespace, "ledger", MODEL, 1, 1))
            (pod,) = serving_target(gateway, MODEL, 1).replicas
        # The pod keeps serving without the operator; stopped, it cannot rewrite the price
        # below (a CPU replica costs $0/h in the catalog, so its own figure would be 0).
        wait_until(lambda: all(tenants.lookup(k) for k in KEYS.values()), 60, "the keys")

        # --- keys --------------------------------------------------------------------------
        with pytest.raises(openai.AuthenticationError) as refused:
            ask(gateway, "sk-not-a-tenants-key", "Hello")
        assert refused.value.code == "invalid_api_key"
        with pytest.raises(openai.PermissionDeniedError) as forbidden:
            ask(gateway, KEYS["elsewhere"], "Hello")
        assert forbidden.value.code == "model_not_allowed"

        # --- chargeback: what the gateway counts is what the pod counted ---------------------
        prompt_before = pod_metric(pod.url, "vllm:prompt_tokens_total")
        generated_before = pod_metric(pod.url, "vllm:generation_tokens_total")
        reported = [ask(gateway, KEYS["web"], f"Ledger line {i}:").usage for i in range(2)]
        asked = list(ask(gateway, KEYS["web"], "Stream me", stream=True,
                         stream_options={"include_usage": True}))  # fmt: skip
        assert asked[-1].choices == [] and asked[-1].usage is not None
        reported.append(asked[-1].usage)
        unasked = list(ask(gateway, KEYS["web"], "Stream quietly", stream=True))
        assert unasked and all(chunk.usage is None for chunk in unasked)  # taken out again
        prompt = pod_metric(pod.url, "vllm:prompt_tokens_total") - prompt_before
        generated = pod_metric(pod.url, "vllm:generation_tokens_total") - generated_before
        web = {"namespace": namespace, "tenant": "web", "model": MODEL}
        # A request is settled once its relay has ended, which can be just after the client
        # has read the last byte: wait for all four, do not race them.
        wait_until(
            lambda: gateway.sample("llm_gateway_tenant_requests_total", **web, code="200") == 4,
            10, "four requests settled",
        )  # fmt: skip
        counted_prompt = gateway.sample("llm_gateway_tenant_tokens_total", **web, kind="prompt")
        counted = gateway.sample("llm_gateway_tenant_tokens_total", **web, kind="completion")
        assert (counted_prompt, counted) == (prompt, generated) and generated == 4 * 6
        assert sum(u.prompt_tokens for u in reported) < counted_prompt  # + the quiet stream's

        # --- requests per minute -------------------------------------------------------------
        for i in range(2):
            ask(gateway, KEYS["metered"], f"Metered {i}")
        with pytest.raises(openai.RateLimitError) as limited:
            ask(gateway, KEYS["metered"], "One too many")
        assert limited.value.code == "requests_per_minute"
        assert 1 <= int(limited.value.response.headers["Retry-After"]) <= 30
        metered = {"namespace": namespace, "tenant": "metered", "model": MODEL}
        assert (
            gateway.sample(
                "llm_gateway_tenant_rejections_total", **metered, limit="requests_per_minute"
            )
            == 1
        )

        # --- tokens per minute: charged with the answer's real usage --------------------------
        used = ask(gateway, KEYS["wordy"], "A long enough question").usage
        assert used is not None and used.total_tokens > 10
        with pytest.raises(openai.RateLimitError) as wordy:
            ask(gateway, KEYS["wordy"], "Again")
        assert wordy.value.code == "tokens_per_minute"
        # The answer's real tokens left the bucket at 10 - used; the next request needs it full
        # again: `used` tokens at ten a minute (less what refilled since).
        retry_after = int(wordy.value.response.headers["Retry-After"])
        assert used.total_tokens * 6 - 10 <= retry_after <= used.total_tokens * 6 + 1

        # --- budget: priced by the deployment's status.cost ----------------------------------
        kube.patch(API, "LLMDeployment", "ledger",
                   {"status": {"cost": {"dollarsPerMillionTokens": PRICE}}}, namespace,
                   sub="status")  # fmt: skip
        wait_until(
            lambda: (t := gateway.directory.get(MODEL)) and t.dollars_per_million_tokens == PRICE,
            30, "the price in the gateway",
        )  # fmt: skip
        first = ask(gateway, KEYS["capped"], "Spend it all").usage  # > 10 tokens: > $0.01
        assert first is not None and first.total_tokens > 10
        capped = {"namespace": namespace, "tenant": "capped", "model": MODEL}
        wait_until(  # its spend counts once it is settled (see above)
            lambda: gateway.sample("llm_gateway_tenant_requests_total", **capped, code="200") == 1,
            10, "the first request settled",
        )  # fmt: skip
        with pytest.raises(openai.RateLimitError) as broke:
            ask(gateway, KEYS["capped"], "And more")
        assert broke.value.code == "budget_day"
        assert 1 <= int(broke.value.response.headers["Retry-After"]) <= 86400
        dollars = gateway.sample("llm_gateway_tenant_dollars_total", **capped)
        assert dollars == pytest.approx(first.total_tokens * PRICE / 1e6)
        # The spend is written to the tenant's status (the ledger's round), for every replica.
        wait_until(lambda: spent_in_status(kube, namespace, "capped") == pytest.approx(dollars),
                   30, "status.spend written")  # fmt: skip

        # --- revocation: the Secret deleted, the key refused soon after ----------------------
        kube.delete("v1", "Secret", "web-key", namespace)
        wait_until(lambda: tenants.lookup(KEYS["web"]) is None, 30, "the key revoked")
        with pytest.raises(openai.AuthenticationError):
            ask(gateway, KEYS["web"], "Still there?")

    # --- a restarted gateway still knows the budget is spent (status.spend) -----------------
    with tenant_gateway(require_tenant_key=True) as (restarted, tenants):
        serving_target(restarted, MODEL, 1)
        wait_until(lambda: tenants.lookup(KEYS["capped"]), 60, "the keys")
        with pytest.raises(openai.RateLimitError) as still:
            ask(restarted, KEYS["capped"], "A fresh start?")
        assert still.value.code == "budget_day"
        assert ask(restarted, KEYS["metered"], "Others are served").usage is not None
