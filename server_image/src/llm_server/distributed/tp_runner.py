"""Rank 0's model runner: sends each step's inputs to the other ranks, then runs its shard.

The engine, its scheduler and the block table live on rank 0 only; the other ranks apply the
same slot mapping and block tables to their own share of the KV heads. Sampling needs the
full logits, which rank 0 has because lm_head is replicated, so nothing comes back to rank 0
but the all-reduces inside the layers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from llm_server.distributed.channel import StepChannel
from llm_server.distributed.workers import WorkerProcesses
from llm_server.engine.model_inputs import ModelInputs
from llm_server.engine.model_runner import ModelRunner
from llm_server.models.llama import LlamaForCausalLM
from llm_server.parallel_state import TensorParallel, destroy_tensor_parallel

log = logging.getLogger(__name__)


class TensorParallelRunner(ModelRunner):
    def __init__(
        self,
        model: LlamaForCausalLM,
        num_blocks: int,
        block_size: int,
        device: torch.device,
        dtype: torch.dtype,
        *,
        tp: TensorParallel,
        workers: WorkerProcesses,
    ) -> None:
        super().__init__(model, num_blocks, block_size, device, dtype)
        self.tp = tp
        self.channel = StepChannel(tp)
        self.workers = workers
        self._closed = False

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        if self.workers.failure is not None:
            raise self.workers.failure  # never start a collective a dead rank cannot join
        self.channel.send(inputs)
        return super().forward(inputs)

    def watch(self, on_failure: Callable[[BaseException], None]) -> None:
        self.workers.watch(on_failure)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.workers.failure is None:
            try:
                self.channel.send(None)  # the workers leave their loop and exit 0
            except Exception:  # a rank died meanwhile: stop() below kills the rest
                log.exception("could not tell the tensor-parallel ranks to stop")
        self.workers.stop()
        destroy_tensor_parallel()
