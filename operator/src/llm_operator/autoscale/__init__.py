"""Autoscaling: the pure policy (signals in, a replica decision out).

Scraping the pods and acting on the decision live elsewhere (the operator); this package
imports no kopf, kubernetes, torch or prometheus_client, so the policy can be table-tested and
replayed against request traces (benchmarks/autoscale_replay/) exactly as the operator runs it.
"""

from llm_operator.autoscale.policy import (
    Decision,
    Limit,
    PolicyConfig,
    PolicyState,
    decide,
)
from llm_operator.autoscale.signals import DeploymentSignals, PodSignals

__all__ = [
    "Decision",
    "DeploymentSignals",
    "Limit",
    "PodSignals",
    "PolicyConfig",
    "PolicyState",
    "decide",
]
