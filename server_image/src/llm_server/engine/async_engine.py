"""asyncio front of the engine: the step loop runs on a dedicated thread.

Requests and aborts reach the thread through a command queue; each step's events travel back
into per-request asyncio queues in one loop.call_soon_threadsafe per step (one wake-up of the
event loop that fans out to every stream, not one per token). A stream ends after the event
whose finish_reason is set, or, after abort(), with no further events.

A failure (the loop raising, or the engine reporting that it can no longer run steps, e.g. a
tensor-parallel rank died) ends every stream with the error and resolves `wait_failure()`;
the server then turns unready and exits non-zero.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import torch

from llm_server.engine.engine import LLMEngine
from llm_server.engine.errors import (
    EngineStoppingError,
    QueueFullError,
    RequestFailedError,
    RequestTooLongError,
)
from llm_server.engine.request import EngineStats, TokenEvent
from llm_server.engine.step_threads import StepThreads
from llm_server.sampling_params import SamplingParams

__all__ = [
    "AsyncEngine",
    "EngineStoppingError",
    "QueueFullError",
    "RequestFailedError",
    "RequestTooLongError",
]

log = logging.getLogger(__name__)

_END = object()  # ends a stream without an event (abort, shutdown)
_IDLE_WAIT_S = 0.5


class _Stream:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def push(self, item: Any) -> None:
        """One item outside the step's delivery (abort, failure)."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


def _fan_out(deliveries: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    """On the event loop: one step's items into their streams' queues, in order."""
    for queue, item in deliveries:
        queue.put_nowait(item)


class AsyncEngine:
    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.max_model_len: int = engine.max_model_len
        self.quantization = engine.quantization
        self._lock = threading.Lock()
        self._commands: deque[tuple[str, str, Any, Any]] = deque()
        self._streams: dict[str, _Stream] = {}
        self._wakeup = threading.Event()
        self._stopping = False
        self._refusing: str | None = None  # why submit() refuses, once stop_all() ran
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._failed: asyncio.Future[BaseException] | None = None
        self._on_failure: Callable[[BaseException], object] | None = None
        self._stats = engine.stats()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()

        def resolve(error: BaseException) -> None:
            if self._failed is not None and not self._failed.done():
                self._failed.set_result(error)

        self._on_failure = lambda error: loop.call_soon_threadsafe(resolve, error)
        self.engine.watch_failures(self._fail)
        await asyncio.to_thread(self._warm_up)
        if self.engine.device.type == "cpu":  # the event loop shares the cores with the steps
            self.engine.step_threads = StepThreads(torch.get_num_threads())
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        prompt = [0] * min(8, self.max_model_len - 2)
        self.engine.generate({"__warmup__": prompt}, SamplingParams(max_tokens=2, ignore_eos=True))
        self.engine.reset_counters()
        self._stats = self.engine.stats()

    async def wait_failure(self) -> BaseException:
        """Resolves with the error once the engine has failed (never, while it is healthy)."""
        assert self._failed is not None, "start() first"
        return await asyncio.shield(self._failed)

    async def shutdown(self) -> None:
        self._stopping = True
        self._wakeup.set()
        if self._thread is not None:
            # A failed step may be stuck in a collective with a dead rank: do not wait on it.
            await asyncio.to_thread(self._thread.join, None if self._failure is None else 5.0)
            self._thread = None
        await asyncio.to_thread(self.engine.close)
        with self._lock:
            streams, self._streams = self._streams, {}
            self._commands.clear()
        for request_id, stream in streams.items():
            self.engine.abort_request(request_id)
            stream.push(_END)

    def submit(
        self, request_id: str, prompt_token_ids: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[TokenEvent]:
        """Queue a request; raises QueueFullError, RequestTooLongError or ValueError now."""
        if self._failure is not None:
            raise RuntimeError("the engine loop has failed") from self._failure
        if self._stopping or self._refusing is not None:
            raise RuntimeError(self._refusing or "the engine is shutting down")
        if not prompt_token_ids:
            raise ValueError("the prompt is empty")
        if len(prompt_token_ids) >= self.max_model_len:
            raise RequestTooLongError(
                f"prompt of {len(prompt_token_ids)} tokens leaves no room to generate "
                f"within max_model_len {self.max_model_len}"
            )
        stream = _Stream(asyncio.get_running_loop())
        with self._lock:
            if request_id in self._streams:
                raise ValueError(f"request {request_id!r} is already running")
            pending = sum(1 for c in self._commands if c[0] == "add")
            if self.engine.num_waiting + pending >= self.engine.config.max_waiting:
                raise QueueFullError("the waiting queue is full")
            self._streams[request_id] = stream
            self._commands.append(("add", request_id, list(prompt_token_ids), params))
        self._wakeup.set()
        return self._iterate(request_id, stream)

    async def _iterate(self, request_id: str, stream: _Stream) -> AsyncIterator[TokenEvent]:
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
                if item.finish_reason is not None:
                    finished = True
                    return
        finally:
            if not finished:  # the consumer stopped early (disconnect, stop string)
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        with self._lock:
            stream = self._streams.pop(request_id, None)
            if stream is None:
                return
            self._commands.append(("abort", request_id, None, None))
        stream.push(_END)
        self._wakeup.set()

    def stop_all(self, reason: str) -> int:
        """End every unfinished request with EngineStoppingError(reason) and refuse new ones:
        a drain past its grace period, so each handler still answers (a JSON error, or an SSE
        error event and [DONE]) instead of being cut off. Returns how many were ended."""
        with self._lock:
            self._refusing = reason
            streams, self._streams = self._streams, {}
            for request_id in streams:  # adds still queued are skipped: their stream is gone
                self._commands.append(("abort", request_id, None, None))
        for stream in streams.values():
            stream.push(EngineStoppingError(reason))
        self._wakeup.set()
        return len(streams)

    def stats(self) -> EngineStats:
        with self._lock:
            pending = sum(1 for c in self._commands if c[0] == "add")
        return dataclasses.replace(self._stats, num_waiting=self._stats.num_waiting + pending)

    @property
    def failed(self) -> bool:
        """The step loop died; the process should be restarted (liveness turns 503)."""
        return self._failure is not None

    def has_unfinished(self) -> bool:
        with self._lock:
            return bool(self._streams or self._commands)

    # ---- the engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wakeup.clear()
                self._apply_commands()
                if self.engine.has_unfinished():
                    events = self.engine.step()
                    self._stats = self.engine.stats()  # before delivery: readers see it first
                    self._deliver(events)
                else:
                    self._stats = self.engine.stats()
                    self._wakeup.wait(_IDLE_WAIT_S)
        except BaseException as error:  # the loop must not die silently
            log.exception("engine loop failed")
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        """From any thread: stop stepping, end every stream with the error, tell the server."""
        with self._lock:
            if self._failure is not None:
                return
            self._failure = error
            streams, self._streams = self._streams, {}
        self._stopping = True
        self._wakeup.set()
        for stream in streams.values():
            stream.push(error)
        if self._on_failure is not None:
            self._on_failure(error)

    def _apply_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                kind, request_id, prompt, params = self._commands.popleft()
                stream = self._streams.get(request_id)
            if kind == "abort":
                self.engine.abort_request(request_id)
                continue
            if stream is None:
                continue  # aborted before it reached the engine
            try:
                self.engine.add_request(request_id, prompt, params)
            except Exception as error:
                with self._lock:
                    self._streams.pop(request_id, None)
                stream.push(error)

    def _deliver(self, events: list[TokenEvent]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], Any]]] = {}
        with self._lock:  # scheduled under the lock: an abort's _END cannot overtake it
            for event in events:
                stream = self._streams.get(event.request_id)
                if stream is None:
                    continue  # aborted while this step ran
                if event.finish_reason is not None:
                    del self._streams[event.request_id]
                item = RequestFailedError(event.error) if event.error else event
                by_loop.setdefault(stream.loop, []).append((stream.queue, item))
            for loop, deliveries in by_loop.items():  # one loop in a server
                loop.call_soon_threadsafe(_fan_out, deliveries)
