"""The process lifecycle: listen at once, load the engine behind /ready, drain on SIGTERM.

Order on SIGTERM (or SIGINT): /ready turns 503 and new generation requests get 503; accepted
requests run to completion within the grace period; leftovers are then ended with an error
their handlers still send (a 503 JSON body, or an SSE error event and [DONE]); then
uvicorn stops listening and closes connections, the engine shuts down, and the process exits 0.
A second signal skips the rest of the grace period.

If the engine fails (its loop raised, or a tensor-parallel rank died), /ready and /health turn
503 at once and the process exits 1 without draining: only a restart recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import uvicorn

from llm_server.api.app import create_app
from llm_server.api.http_protocol import timed_h11_protocol
from llm_server.api.state import ServerState
from llm_server.config import ServerConfig
from llm_server.gguf_file import GgufError
from llm_server.model_source import ModelFetchError, local_model_dir
from llm_server.quantization.scheme import QuantizationError

if TYPE_CHECKING:  # torch loads with the engine, after the listener is up
    from llm_server.engine.async_engine import AsyncEngine

logger = logging.getLogger("llm_server")

# After the grace period uvicorn gets this long to flush and close connections.
CONNECTION_CLOSE_TIMEOUT_S = 3.0
# Once the engine failed, the process exits 1 within this long whatever else is stuck.
ENGINE_FAILURE_EXIT_S = 30.0
# ... after answering 503 this long more, so probes and scrapes see why.
FAILED_LINGER_S = 1.0


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ours drains first, then sets should_exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """Bound here rather than by uvicorn, so a taken port is one clear error, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _detect_device(config: ServerConfig) -> tuple[str, bool]:
    import torch

    cuda = torch.cuda.is_available()
    device = config.device if config.device != "auto" else ("cuda" if cuda else "cpu")
    return device, cuda


def _load_engine(config: ServerConfig, cuda_available: bool) -> AsyncEngine:
    """Blocking: runs on a worker thread so /health answers while weights load."""
    from llm_server.engine.async_engine import AsyncEngine
    from llm_server.engine_factory import build_engine

    model_dir = local_model_dir(config.model, config.revision, config.cache_dir)
    return AsyncEngine(build_engine(config.engine_config(str(model_dir), cuda_available)))


async def serve(config: ServerConfig) -> int:
    """Run until drained; the process exit code."""
    try:
        listener = _listen(config.host, config.port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1
    device, cuda_available = _detect_device(config)
    dtype = config.engine_config(config.model, cuda_available).dtype
    state = ServerState(config, device=device, dtype=dtype)
    server = _Uvicorn(
        uvicorn.Config(
            create_app(state),
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            timeout_graceful_shutdown=int(CONNECTION_CLOSE_TIMEOUT_S),
            http=timed_h11_protocol(
                config.http_header_timeout_seconds, config.http_body_timeout_seconds
            ),
            timeout_keep_alive=config.http_keep_alive_seconds,  # type: ignore[arg-type]
            h11_max_incomplete_event_size=config.max_header_bytes,
            limit_concurrency=config.limit_concurrency,
            access_log=config.log_level in ("debug", "trace"),
        )
    )
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        state.begin_drain()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    serving = asyncio.create_task(server.serve(sockets=[listener]))
    engine: AsyncEngine | None = None
    exit_code = 0
    try:
        loading = asyncio.create_task(asyncio.to_thread(_load_engine, config, cuda_available))
        done, _ = await asyncio.wait(
            {loading, serving, asyncio.create_task(stop.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
        if loading in done:
            engine = loading.result()
            await engine.start()
            # A pre-quantized checkpoint fetched from a URI decided the scheme only once on disk.
            state.set_engine(engine, engine.quantization)
            logger.info("ready: serving %s", ", ".join(config.served_model_names))
            failure = asyncio.create_task(engine.wait_failure())
            await asyncio.wait({serving, failure, asyncio.create_task(stop.wait())},
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if failure.done():  # /ready and /health already answer 503 engine_failed
                logger.error("the engine failed (%s); exiting", failure.result())
                state.metrics.set_ready(False)
                _exit_if_stuck(ENGINE_FAILURE_EXIT_S)
                exit_code = 1
                await engine.shutdown()  # stop other ranks while probes still see the 503
                await asyncio.sleep(FAILED_LINGER_S)
        elif not loading.done():
            logger.info("stopping before the model finished loading")
        if stop.is_set() and not serving.done() and exit_code == 0:
            await _drain(state, config.drain_grace_seconds, lambda: signals_seen > 1, engine)
    except (ModelFetchError, GgufError, QuantizationError) as exc:
        logger.error("cannot load the model: %s", exc)
        exit_code = 1
    except Exception:
        logger.exception("the server failed")
        exit_code = 1
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
        if engine is not None:
            await engine.shutdown()
    if serving.done() and not serving.cancelled() and serving.exception() is not None:
        return 1  # uvicorn itself failed
    return exit_code


def _exit_if_stuck(deadline_s: float) -> None:
    """A failed engine may leave a thread stuck (a collective with a dead rank): never hang."""
    timer = threading.Timer(deadline_s, os._exit, args=(1,))
    timer.daemon = True
    timer.start()


async def _drain(
    state: ServerState, grace_s: float, forced: Callable[[], bool], engine: AsyncEngine | None
) -> None:
    logger.info("draining: %d request(s) in flight, grace %.0fs", state.inflight, grace_s)
    deadline = asyncio.get_running_loop().time() + grace_s
    while state.inflight and not forced():
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        await state.wait_idle(min(remaining, 0.5))
    if state.inflight:
        logger.warning("grace period over: %d request(s) still running", state.inflight)
        if engine is not None:
            # Each handler answers the error itself (uvicorn would cut it: a plain-text 500 or
            # a truncated stream); then the connections close.
            engine.stop_all(f"the {grace_s:g}s drain grace period ran out")
            await state.wait_idle(CONNECTION_CLOSE_TIMEOUT_S)
    else:
        logger.info("drained: every accepted request finished")
