"""The real operator (kopf + handlers.py) in a thread with its own event loop, for tests on
the real control plane that drive it from synchronous code (the `kube` client).

`KUBECONFIG` must point at the cluster before entering (the operator's client and kopf's
login read it at start-up); `operator_config` gives test-sized timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import kopf

from llm_operator.plan import FallbackSettings
from llm_operator.settings import OperatorConfig


def operator_config(namespace: str, **overrides: Any) -> OperatorConfig:
    values: dict[str, Any] = {
        "namespaces": (namespace,),
        "peering": None,
        "metrics_port": 0,
        "resync_seconds": 0.5,
        "fallback": FallbackSettings(
            unschedulable_seconds=0.5, primary_retry_seconds=3600, primary_retry_max_seconds=3600
        ),
    }
    values.update(overrides)
    return OperatorConfig(**values)


@contextlib.contextmanager
def running_operator(
    config: OperatorConfig, peering: bool = False, priority: int = 7, identity: str | None = None
) -> Iterator[kopf.Memo]:
    """The real operator (handlers.py) in a thread with its own event loop, as in a pod.

    peering=True runs it as __main__ does in the chart (config.peering, here a fixed
    priority); the peering object must exist already (__main__.prepare_cluster creates it).
    `identity` names it among its peers (kopf's default, host and pid, is the same for two
    operators in one process).
    """
    import llm_operator.handlers  # noqa: F401  (registers the handlers)

    stop, ready = threading.Event(), threading.Event()
    memo = kopf.Memo(config=config)
    settings = kopf.OperatorSettings()
    settings.queueing.exit_timeout = 0.5  # no lingering on stop: tests start it many times
    settings.watching.reconnect_backoff = 0.1
    failure: list[BaseException] = []
    peers: dict[str, Any] = (
        {"standalone": False, "peering_name": config.peering, "priority": priority}
        if peering
        else {"standalone": True}
    )

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    **peers,
                    clusterwide=config.all_namespaces,
                    namespaces=list(config.namespaces),
                    memo=memo,
                    settings=settings,
                    stop_flag=stop,
                    ready_flag=ready,
                    identity=identity,  # type: ignore[arg-type]
                )
            )
        except BaseException as exc:  # surfaced in the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        raise failure[0]
    try:
        yield memo
    finally:
        stop.set()
        thread.join(30)
    assert not failure, failure
