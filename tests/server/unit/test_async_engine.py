"""AsyncEngine on its thread, driven from asyncio as the HTTP layer drives it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from llm_server.engine.async_engine import AsyncEngine, QueueFullError
from llm_server.engine.engine import LLMEngine
from llm_server.engine.request import TokenEvent
from llm_server.sampling_params import SamplingParams

PARAMS = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)


async def collect(stream) -> list[int]:  # type: ignore[no-untyped-def]
    return [event.token_id async for event in stream]


async def test_concurrent_streams_match_the_sync_engine(
    make_engine: Callable[..., LLMEngine],
) -> None:
    prompts = {f"r{i}": list(range(3 + i, 12 + 2 * i)) for i in range(6)}
    expected = {
        rid: [e.token_id for e in events]
        for rid, events in make_engine().generate(prompts, PARAMS).items()
    }
    engine = AsyncEngine(make_engine())
    await engine.start()
    try:
        assert engine.stats().generation_tokens_total == 0  # warm-up is not traffic
        streams = {rid: engine.submit(rid, p, PARAMS) for rid, p in prompts.items()}
        results = await asyncio.gather(*(collect(s) for s in streams.values()))
        assert dict(zip(streams, results, strict=True)) == expected
        assert not engine.has_unfinished()
        assert engine.stats().generation_tokens_total == 6 * 8
    finally:
        await engine.shutdown()


async def test_queue_bound_abort_and_shutdown(make_engine: Callable[..., LLMEngine]) -> None:
    engine = AsyncEngine(make_engine(max_waiting=2))
    long = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)
    # Not started yet: submissions stay queued, so the bound is deterministic.
    first = engine.submit("a", [5, 6, 7], long)
    second = engine.submit("b", [5, 6, 7], long)
    with pytest.raises(QueueFullError):
        engine.submit("c", [5, 6, 7], long)
    with pytest.raises(ValueError):
        engine.submit("a", [1], long)
    await engine.start()
    try:
        event = await anext(first)
        assert event.finish_reason is None and event.num_prompt_tokens == 3
        engine.abort("a")
        engine.abort("a")  # idempotent
        # The stream just ends: what was delivered before the abort, then no finish event.
        rest = [e async for e in first]
        assert len(rest) < long.max_tokens - 1 and all(e.finish_reason is None for e in rest)
        # "b" goes on: all its tokens arrive (a fixed sleep then has_unfinished() raced it)
        assert len([e async for e in second]) == long.max_tokens
    finally:
        await engine.shutdown()
    assert not engine.has_unfinished()
    assert engine.engine.block_manager.usage == 0.0


async def test_a_crashing_step_marks_the_engine_failed(
    make_engine: Callable[..., LLMEngine],
) -> None:
    sync_engine = make_engine()
    engine = AsyncEngine(sync_engine)
    await engine.start()
    try:
        assert not engine.failed

        def broken_step() -> list[object]:
            raise RuntimeError("device lost")

        sync_engine.step = broken_step  # type: ignore[method-assign,assignment]
        with pytest.raises(RuntimeError, match="device lost"):
            await collect(engine.submit("r", [1, 2, 3], PARAMS))
        assert engine.failed
        with pytest.raises(RuntimeError, match="failed"):
            engine.submit("r2", [1, 2, 3], PARAMS)
    finally:
        await engine.shutdown()


@pytest.mark.parametrize("batch", [1, 8])
async def test_one_event_loop_wake_up_per_step_whatever_the_batch(
    make_engine: Callable[..., LLMEngine], batch: int
) -> None:
    prompts = {f"r{i}": list(range(3 + i, 12 + 2 * i)) for i in range(batch)}
    expected = {
        rid: [e.token_id for e in events]
        for rid, events in make_engine().generate(prompts, PARAMS).items()
    }
    sync_engine = make_engine()
    engine = AsyncEngine(sync_engine)
    step_sizes: list[int] = []
    step = sync_engine.step

    def counted_step() -> list[TokenEvent]:
        events = step()
        if threading.current_thread().name == "llm-engine":  # not the warm-up
            step_sizes.append(len(events))
        return events

    sync_engine.step = counted_step  # type: ignore[method-assign]
    streams = {rid: engine.submit(rid, p, PARAMS) for rid, p in prompts.items()}
    loop = asyncio.get_running_loop()
    wake_ups_from_engine = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted_call(*args: Any, **kwargs: Any) -> asyncio.Handle:
        nonlocal wake_ups_from_engine
        wake_ups_from_engine += threading.current_thread().name == "llm-engine"
        return call_soon_threadsafe(*args, **kwargs)

    loop.call_soon_threadsafe = counted_call  # type: ignore[method-assign]
    try:
        await engine.start()
        results = await asyncio.gather(*(collect(s) for s in streams.values()))
    finally:
        del loop.call_soon_threadsafe  # the instance attribute shadowed the method
        await engine.shutdown()
    assert dict(zip(streams, results, strict=True)) == expected
    assert max(step_sizes) == batch  # the requests did share steps
    assert wake_ups_from_engine == sum(1 for n in step_sizes if n)
