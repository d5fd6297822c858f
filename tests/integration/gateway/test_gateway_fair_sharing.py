"""Fair sharing of a saturated model between two tenants, on the real control plane (issue 23):
a REAL llm-server pod that runs one sequence at a time (batching.maxConcurrentSequences: 1),
two LLMTenants of weights 3 and 1, the gateway watching them, the official `openai` client.

The light tenant sends its backlog first, behind one long request of its own that holds the
only slot (so the backlog stays queued however fast the server is); the heavy one arrives while
it waits. First come,
first served would finish every light request before any heavy one; with the fair queue the
heavy tenant gets about three turns per light turn while both wait, and the light tenant is
never starved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
from gateway_harness import cpu_llmd, key_secret, serving_target, tenant
from kube_client import Kube, wait_until
from llm_server_runtime import LlmServerRuntime
from operator_thread import operator_config, running_operator

MODEL = "shared-chat"
KEYS = {"gold": "sk-gold-333", "bronze": "sk-bronze-111"}
EACH = 12  # requests per tenant
# The light tenant's first request: long enough (~2 s here; queueing all the others took 0.6 s)
# that its backlog and the heavy tenant's requests are all queued before the slot frees.
BLOCKER_TOKENS = 960  # of the deployment's 1,024-token context


def test_two_tenants_share_a_saturated_model_by_weight(
    kube: Kube,
    namespace: str,
    nodes: Any,
    operator_env: None,
    pod_servers: LlmServerRuntime,
    tenant_gateway: Callable[..., Any],
) -> None:
    nodes(f"{namespace}-cpu")
    kube.create(tenant(namespace, "gold", weight=3))
    kube.create(tenant(namespace, "bronze", weight=1))
    for name, key in KEYS.items():
        kube.create(key_secret(namespace, name, key))
    deployment = cpu_llmd(namespace, "shared", MODEL, 1, 1)
    deployment["spec"]["optimization"]["batching"] = {"maxConcurrentSequences": 1}

    with tenant_gateway(require_tenant_key=True) as (gateway, tenants):
        with running_operator(operator_config(namespace)):
            kube.create(deployment)
            serving_target(gateway, MODEL, 1)
        assert gateway.directory.get(MODEL).capacity_per_replica == 1
        wait_until(lambda: all(tenants.lookup(k) for k in KEYS.values()), 60, "the keys")

        finished: list[str] = []  # tenants, in the order their answers ended
        lock = threading.Lock()

        def ask(name: str, tokens: int = 12) -> int:
            client = openai.OpenAI(base_url=gateway.base_url, api_key=KEYS[name],
                                   max_retries=0, timeout=120)  # fmt: skip
            answer = client.completions.create(
                model=MODEL, prompt=f"{name} asks", max_tokens=tokens,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            with lock:
                finished.append(name)
            return answer.usage.completion_tokens if answer.usage else 0

        def queued() -> float:
            return gateway.sample("llm_gateway_queued_requests", model=MODEL)

        def in_flight() -> float:
            series = gateway.samples("llm_gateway_in_flight")
            return sum(value for labels, value in series if labels["model"] == MODEL)

        with ThreadPoolExecutor(max_workers=2 * EACH) as pool:
            light = [pool.submit(ask, "bronze", BLOCKER_TOKENS)]
            wait_until(lambda: in_flight() >= 1, 60, "bronze's long request dispatched")
            light += [pool.submit(ask, "bronze") for _ in range(EACH - 1)]
            wait_until(lambda: queued() >= EACH - 1, 60, "bronze's backlog queued")
            heavy = [pool.submit(ask, "gold") for _ in range(EACH)]
            wait_until(lambda: queued() >= 2 * EACH - 3, 60, "gold's requests queued too")
            tokens = [f.result(timeout=300) for f in light + heavy]
        assert tokens == [BLOCKER_TOKENS] + [12] * (2 * EACH - 1)  # every answer in full

        # While gold was served (its first to its last answer), bronze kept a quarter of the
        # turns: about 4 of 16. FIFO would give it 0 there (it would be done before gold
        # began); equal weights about 12; gold-first priority 0.
        first, last = finished.index("gold"), len(finished) - 1 - finished[::-1].index("gold")
        bronze_during_gold = finished[first : last + 1].count("bronze")
        assert 2 <= bronze_during_gold <= 7, finished
        assert finished[0] == "bronze"  # it came first and was dispatched at once

        waited = gateway.sample("llm_gateway_queue_seconds_count", model=MODEL)
        assert waited >= 2 * EACH - 3  # all but the first few waited in the fair queue
        assert queued() == 0
