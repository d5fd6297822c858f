"""Per-step torch threads on CPU: a small decode step leaves one core to the server's event
loop, a larger step takes every core; the engine applies it before each step, and a server's
AsyncEngine on CPU turns it on (an offline LLMEngine keeps all cores)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from llm_server.engine import step_threads
from llm_server.engine.async_engine import AsyncEngine
from llm_server.engine.engine import LLMEngine
from llm_server.engine.step_threads import SMALL_STEP_TOKENS, StepThreads, threads_for
from llm_server.sampling_params import SamplingParams


def test_small_steps_leave_one_core_and_larger_ones_take_all() -> None:
    assert threads_for(1, 2) == 1
    assert threads_for(SMALL_STEP_TOKENS, 16) == 15
    assert threads_for(SMALL_STEP_TOKENS + 1, 2) == 2
    assert threads_for(512, 16) == 16
    assert threads_for(1, 1) == 1  # one core: nothing to leave


def test_the_thread_count_is_set_only_when_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(step_threads.torch, "set_num_threads", calls.append)
    threads = StepThreads(cores=4)
    for tokens in (1, 1, 2, 64, 300, 1):
        threads.before_step(tokens)
    assert calls == [3, 4, 3]


class _Recorder(StepThreads):
    def __init__(self) -> None:
        super().__init__(cores=torch.get_num_threads())
        self.steps: list[int] = []

    def before_step(self, step_tokens: int) -> None:
        self.steps.append(step_tokens)


def test_the_engine_applies_it_with_each_steps_token_count(
    make_engine: Callable[..., LLMEngine],
) -> None:
    engine = make_engine()
    assert engine.step_threads is None  # offline: every core, untouched
    engine.step_threads = recorder = _Recorder()
    params = SamplingParams(max_tokens=3, temperature=0.0, ignore_eos=True)
    engine.add_request("a", list(range(3, 10)), params)
    while engine.has_unfinished():
        engine.step()
    assert recorder.steps == [7, 1, 1]  # the 7-token prefill, then one decode token per step


async def test_a_server_engine_on_cpu_turns_it_on(make_engine: Callable[..., LLMEngine]) -> None:
    threads = torch.get_num_threads()
    engine = AsyncEngine(make_engine())
    await engine.start()
    try:
        assert isinstance(engine.engine.step_threads, StepThreads)
        assert engine.engine.step_threads.cores == threads
    finally:
        await engine.shutdown()
        torch.set_num_threads(threads)
