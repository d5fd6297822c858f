"""Execute one scheduled step: build the flat batch, run the model once, sample.

All decode sequences share one forward pass with every prefill chunk; logits are computed
only for the rows that sample. `forward` is the part every tensor-parallel rank runs on the
same ModelInputs (distributed.TensorParallelRunner overrides it to send them first); logits
and sampling stay on rank 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from llm_server.engine.cuda_graphs import DecodeGraphs
from llm_server.engine.input_buffer import InputBuffer
from llm_server.engine.model_inputs import (
    ModelInputs,
    StepTensors,
    build_inputs,
    chunk_rows,
    inputs_without_cache,
)
from llm_server.engine.scheduler import SchedulerOutput
from llm_server.layers.prompt_logprobs import prompt_logprobs
from llm_server.layers.sampler import SampledToken, sample
from llm_server.models.llama import LlamaForCausalLM
from llm_server.token_logprobs import TokenLogprobs


@dataclass(frozen=True)
class RunnerOutput:
    sampled: dict[str, SampledToken]  # request_id -> the token sampled this step
    # request_id -> logprobs of the prompt tokens that follow those the sequence already has
    prompt_logprobs: dict[str, list[TokenLogprobs]] = field(default_factory=dict)


class ModelRunner:
    def __init__(
        self,
        model: LlamaForCausalLM,
        num_blocks: int,
        block_size: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.model = model
        self.block_size = block_size
        self.device = device
        for attn in model.attention_layers():
            shape = (num_blocks, block_size, attn.num_kv_heads, attn.head_dim)
            cache_dtype = attn.kv_cache_dtype or dtype  # the loader may have chosen fp8
            attn.k_cache = torch.zeros(shape, dtype=cache_dtype, device=device)
            attn.v_cache = torch.zeros(shape, dtype=cache_dtype, device=device)
        self.input_buffer = InputBuffer(device)
        self._staged: tuple[ModelInputs, StepTensors] | None = None
        self.decode_graphs: DecodeGraphs | None = None  # set by build_engine (--cuda-graphs)

    def execute(self, batch: SchedulerOutput) -> RunnerOutput:
        inputs, sampling_chunks = build_inputs(batch, self.block_size, self.input_buffer.host)
        with torch.inference_mode():
            hidden = self.forward(inputs)
            scored = self._prompt_logprobs(batch, hidden)
            if not sampling_chunks:
                return RunnerOutput(sampled={}, prompt_logprobs=scored)
            rows = self._stage(inputs).sample_rows  # copied with the rest of the step's inputs
            logits = self.model.compute_logits(hidden.index_select(0, rows))
            seqs = [c.seq for c in sampling_chunks]
            results = sample(
                logits, [s.params for s in seqs], [s.generator for s in seqs], list(seqs)
            )
        sampled = {s.request_id: r for s, r in zip(seqs, results, strict=True)}
        return RunnerOutput(sampled, scored)

    def _prompt_logprobs(
        self, batch: SchedulerOutput, hidden: torch.Tensor
    ) -> dict[str, list[TokenLogprobs]]:
        """Score the prompt tokens this step's chunks predict that were not scored before."""
        scored: dict[str, list[TokenLogprobs]] = {}
        if not any(chunk.seq.needs_prompt_logprobs for chunk in batch.chunks):
            return scored  # the common step: nobody asked
        for chunk, row in chunk_rows(batch):
            seq = chunk.seq
            if not seq.needs_prompt_logprobs:
                continue
            # Position p scores token p + 1; earlier ones were scored before a preemption.
            first = max(chunk.start, len(seq.prompt_logprobs) - 1)
            end = min(chunk.start + chunk.num_tokens, seq.num_prompt_tokens - 1)
            if first >= end:
                continue
            rows = hidden[row + first - chunk.start : row + end - chunk.start]
            targets = seq.prompt_token_ids[first + 1 : end + 1]
            k = seq.params.prompt_logprobs or 0
            scored[seq.request_id] = prompt_logprobs(rows, self.model.compute_logits, targets, k)
        return scored

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        """Hidden states of the step's tokens (writing their K/V to the cache)."""
        step = self._stage(inputs)
        if self.decode_graphs is not None:  # a decode-only step replays its captured graph
            replayed = self.decode_graphs.run(step.token_ids, step.positions, step.meta)
            if replayed is not None:
                return replayed
        hidden: torch.Tensor = self.model(step.token_ids, step.positions, step.meta)
        return hidden

    def _stage(self, inputs: ModelInputs) -> StepTensors:
        """The step's tensors on the device: one copy per ModelInputs (forward and sampling
        both read them)."""
        if self._staged is None or self._staged[0] is not inputs:
            self._staged = inputs, inputs.on_device(self.input_buffer.to_device(inputs.packed))
        return self._staged[1]

    def score(self, token_ids: list[int]) -> torch.Tensor:
        """Logits at every position of one sequence, without touching the KV cache."""
        inputs = inputs_without_cache(token_ids)
        with torch.inference_mode():
            return self.model.compute_logits(self.forward(inputs)).float()

    def watch(self, on_failure: Callable[[BaseException], None]) -> None:
        """Have `on_failure` called (from any thread) if the runner can no longer run steps."""

    def close(self) -> None:
        """Release what the runner holds beyond memory (other ranks' processes)."""
