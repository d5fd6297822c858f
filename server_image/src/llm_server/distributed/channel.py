"""Rank 0 -> other ranks: each step's ModelInputs, over the gloo control group."""

from __future__ import annotations

import torch
import torch.distributed as dist

from llm_server.engine.model_inputs import ModelInputs
from llm_server.parallel_state import TensorParallel


class StepChannel:
    """send() on rank 0 and recv() on the others pair up, one call per step; None ends it."""

    def __init__(self, tp: TensorParallel) -> None:
        self.group = tp.control_group

    def send(self, inputs: ModelInputs | None) -> None:
        dist.broadcast_object_list([inputs], src=0, group=self.group)

    def recv(self) -> ModelInputs | None:
        box: list[ModelInputs | None] = [None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def agree_min(self, value: int) -> int:
        """The smallest of every rank's value (e.g. KV blocks that fit each rank's memory)."""
        tensor = torch.tensor([value], dtype=torch.long)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=self.group)
        return int(tensor.item())
