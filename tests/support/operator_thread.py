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

from llm_operator.plan import FallbackSettings
from llm_operator.settings import OperatorConfig


def operator_config(namespace: str, **overrides: Any) -> OperatorConfig:
    values: dict[str, Any] = {
        "namespaces": (namespace,),
        "peering": None,
        "metrics_port": 0,
        "resync_seconds": 1.0,
        "fallback": FallbackSettings(
            unschedulable_seconds=0.5, primary_retry_seconds=3600, primary_retry_max_seconds=3600
        ),
    }
    values.update(overrides)
    return OperatorConfig(**values)


@contextlib.contextmanager
def operator_thread(config: OperatorConfig) -> Iterator[Any]:
    """Yields kopf's memo (memo.runtime once started); stops the operator on exit."""
    import kopf

    import llm_operator.handlers  # noqa: F401  (registers the handlers)

    stop, ready = threading.Event(), threading.Event()
    memo = kopf.Memo(config=config)
    settings = kopf.OperatorSettings()
    settings.queueing.exit_timeout = 0.1
    settings.watching.reconnect_backoff = 0.1
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    standalone=True,
                    clusterwide=config.all_namespaces,
                    namespaces=list(config.namespaces),
                    memo=memo,
                    settings=settings,
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as exc:  # surfaced below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    ready.wait(60)
    if failure:
        raise failure[0]
    try:
        yield memo
    finally:
        stop.set()
        thread.join(30)
    assert not failure, failure
