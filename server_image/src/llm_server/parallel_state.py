"""Who this process is among the tensor-parallel ranks, and the collectives the layers use.

Two process groups: the default one carries the model's all-reduces (NCCL on GPU, gloo on
CPU); a gloo group carries rank 0's per-step inputs as pickled objects, so step metadata
never goes through GPU memory and a dead peer surfaces as a socket error, not a stuck kernel.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# A step's all-reduce waits at most this long for a peer before it raises.
COLLECTIVE_TIMEOUT = timedelta(seconds=120)
# Workers wait on the control group between steps, so it must tolerate an idle server.
CONTROL_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class TensorParallel:
    """This rank's place among `size` ranks; size 1 is the single-process model."""

    rank: int = 0
    size: int = 1
    control_group: Any = None  # gloo ProcessGroup for step inputs; None when size == 1

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` in place over the ranks (the row-parallel layers' partial outputs)."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def shard(self, full: int, what: str) -> int:
        """This rank's share of `full` (heads, rows); the caller checked divisibility."""
        if full % self.size:
            raise ValueError(f"{what} {full} is not divisible by tensor parallel size {self.size}")
        return full // self.size


SINGLE = TensorParallel()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, rank: int) -> torch.device:
    """cuda (or cuda:B) on rank r is cuda:B+r; CPU ranks share the CPU."""
    if device.type != "cuda":
        return device
    return torch.device("cuda", (device.index or 0) + rank)


def init_tensor_parallel(
    rank: int, size: int, port: int, device: torch.device, timeout: timedelta = COLLECTIVE_TIMEOUT
) -> TensorParallel:
    """Join the ranks over TCP on loopback (rank 0 hosts the rendezvous store)."""
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a timeout aborts, not hangs
    if device.type == "cuda":
        torch.cuda.set_device(rank_device(device, rank))
    dist.init_process_group(
        backend=backend_for(device),
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=size,
        timeout=timeout,
    )
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return TensorParallel(rank=rank, size=size, control_group=control)


def destroy_tensor_parallel() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def split_cpu_threads(size: int) -> None:
    """CPU ranks share the cores: give each its share instead of oversubscribing them."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
