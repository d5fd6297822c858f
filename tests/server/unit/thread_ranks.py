"""Tensor-parallel ranks as threads of one process: all-reduce is a barrier and a sum.

Fast enough for every sharding rule of every model family; the real multi-process gloo path
is tested separately (test_tensor_parallel.py, engine level).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from llm_server.parallel_state import TensorParallel

T = TypeVar("T")


class ThreadCollective:
    """all_reduce for ranks that are threads of one process (same summation order on each)."""

    def __init__(self, size: int) -> None:
        self.barrier = threading.Barrier(size, timeout=30)
        self.parts: list[torch.Tensor | None] = [None] * size

    def all_reduce(self, rank: int, tensor: torch.Tensor) -> torch.Tensor:
        self.parts[rank] = tensor.clone()
        self.barrier.wait()
        total = torch.stack([p for p in self.parts if p is not None]).sum(dim=0)
        self.barrier.wait()  # everyone has read the parts before the next call overwrites them
        return tensor.copy_(total)


@dataclass(frozen=True)
class ThreadTP(TensorParallel):
    collective: Any = None

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.collective.all_reduce(self.rank, tensor)  # type: ignore[no-any-return]


def thread_ranks(size: int) -> list[ThreadTP]:
    """`size` ranks sharing one collective."""
    collective = ThreadCollective(size)
    return [ThreadTP(rank, size, collective=collective) for rank in range(size)]


def on_each_rank(size: int, work: Callable[[int], T]) -> list[T]:
    """work(rank) for every rank at once, one thread each (they meet in all_reduce)."""
    results: list[Any] = [None] * size
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        try:
            results[rank] = work(rank)
        except BaseException as exc:  # re-raised in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    assert not any(thread.is_alive() for thread in threads), "a rank did not finish in 60 s"
    return results
