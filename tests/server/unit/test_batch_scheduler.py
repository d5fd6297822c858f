"""The scheduler alone, on sequences that never touch a model."""

from __future__ import annotations

import itertools

import pytest
import torch

from llm_server.engine.config import EngineConfig
from llm_server.engine.errors import QueueFullError
from llm_server.engine.kv_cache import BlockManager
from llm_server.engine.scheduler import Scheduler, SchedulerOutput
from llm_server.engine.sequence import Sequence, SequenceStatus
from llm_server.sampling_params import SamplingParams


def make_scheduler(num_blocks: int = 64, **overrides: object) -> Scheduler:
    config = EngineConfig(model="unused", block_size=4, **overrides)  # type: ignore[arg-type]
    return Scheduler(config, BlockManager(num_blocks, config.block_size))


def make_seq(request_id: str, prompt_len: int) -> Sequence:
    """Prompts share no prefix (see test_prefix_cache.py for scheduling with reuse)."""
    first = next(_token_ids)
    prompt = list(range(first, first + prompt_len))
    return Sequence(request_id, prompt, SamplingParams(max_tokens=8), torch.Generator())


_token_ids = itertools.count(0, 1000)


def finish_step(out: SchedulerOutput) -> None:
    """What the engine's update does: mark chunks computed, append a token where sampled."""
    for chunk in out.chunks:
        chunk.seq.num_computed_tokens += chunk.num_tokens
        if chunk.samples:
            chunk.seq.output_token_ids.append(1)


def test_token_budget_and_chunked_prefill() -> None:
    scheduler = make_scheduler(max_num_batched_tokens=10)
    long, short = make_seq("long", 25), make_seq("short", 3)
    scheduler.add(long)
    scheduler.add(short)
    out = scheduler.schedule()
    assert [(c.seq.request_id, c.num_tokens, c.samples) for c in out.chunks] == [
        ("long", 10, False)
    ]
    finish_step(out)
    out = scheduler.schedule()
    assert [(c.seq.request_id, c.start, c.num_tokens) for c in out.chunks] == [("long", 10, 10)]
    finish_step(out)
    out = scheduler.schedule()  # the last 5 of the prompt, then the short one fits too
    assert [(c.seq.request_id, c.num_tokens, c.samples) for c in out.chunks] == [
        ("long", 5, True),
        ("short", 3, True),
    ]
    assert out.num_tokens <= 10
    finish_step(out)
    out = scheduler.schedule()  # both decode now, one token each
    assert [(c.seq.request_id, c.num_tokens) for c in out.decodes] == [("long", 1), ("short", 1)]


def test_without_chunking_a_prompt_waits_for_a_whole_budget() -> None:
    scheduler = make_scheduler(max_num_batched_tokens=10, chunked_prefill=False)
    first, second = make_seq("a", 6), make_seq("b", 6)
    scheduler.add(first)
    scheduler.add(second)
    out = scheduler.schedule()
    assert [c.seq.request_id for c in out.chunks] == ["a"]
    assert second.status is SequenceStatus.WAITING


def test_fifo_admission_and_max_num_seqs() -> None:
    scheduler = make_scheduler(max_num_seqs=2)
    seqs = [make_seq(str(i), 2) for i in range(4)]
    for seq in seqs:
        scheduler.add(seq)
    out = scheduler.schedule()
    assert [c.seq.request_id for c in out.chunks] == ["0", "1"]
    scheduler.finish(seqs[0], "stop")
    finish_step(out)
    out = scheduler.schedule()
    assert [c.seq.request_id for c in out.chunks] == ["1", "2"]


def test_bounded_waiting_queue() -> None:
    scheduler = make_scheduler(max_waiting=2)
    scheduler.add(make_seq("a", 2))
    scheduler.add(make_seq("b", 2))
    with pytest.raises(QueueFullError):
        scheduler.add(make_seq("c", 2))


def test_preemption_frees_the_newest_sequence_and_requeues_it_first() -> None:
    scheduler = make_scheduler(num_blocks=4)  # 16 token slots
    old, new, later = make_seq("old", 8), make_seq("new", 7), make_seq("later", 2)
    scheduler.add(old)
    scheduler.add(new)
    finish_step(scheduler.schedule())  # old: 9 tokens (3 blocks needed next), new: 8
    scheduler.add(later)
    out = scheduler.schedule()
    assert [s.request_id for s in out.preempted] == ["new"]
    assert [c.seq.request_id for c in out.chunks] == ["old"]
    assert new.num_computed_tokens == 0 and new.block_table == []
    assert [s.request_id for s in scheduler.waiting] == ["new", "later"]
    assert scheduler.num_preemptions_total == 1
    scheduler.finish(old, "stop")
    assert scheduler.blocks.num_free_blocks == 4
