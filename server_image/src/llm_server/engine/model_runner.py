"""Execute one scheduled step: build the flat batch, run the model once, sample.

All decode sequences share one forward pass with every prefill chunk; logits are computed
only for the rows that sample. `forward` is the part every tensor-parallel rank runs on the
same ModelInputs (distributed.TensorParallelRunner overrides it to send them first); logits
and sampling stay on rank 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from llm_server.engine.model_inputs import ModelInputs, PrefillInputs, build_inputs
from llm_server.engine.scheduler import SchedulerOutput
from llm_server.layers.sampler import SampledToken, sample
from llm_server.models.llama import LlamaForCausalLM


@dataclass(frozen=True)
class RunnerOutput:
    sampled: dict[str, SampledToken]  # request_id -> the token sampled this step


def kv_block_bytes(model: LlamaForCausalLM, block_size: int, dtype: torch.dtype) -> int:
    """Bytes of one KV block on this rank (its share of the KV heads under tensor parallelism)."""
    per_token = sum(
        2 * a.num_kv_heads * a.head_dim * (a.kv_cache_dtype or dtype).itemsize
        for a in model.attention_layers()
    )  # kv_cache_dtype: fp8 when the loader was asked for an fp8 cache
    return per_token * block_size


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

    def _tensor(self, values: list[int] | list[list[int]]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)

    def execute(self, batch: SchedulerOutput) -> RunnerOutput:
        inputs, sample_rows, sampling_chunks = build_inputs(batch, self.block_size)
        with torch.inference_mode():
            hidden = self.forward(inputs)
            if not sample_rows:
                return RunnerOutput(sampled={})
            logits = self.model.compute_logits(hidden[self._tensor(sample_rows)])
            seqs = [c.seq for c in sampling_chunks]
            results = sample(logits, [s.params for s in seqs], [s.generator for s in seqs])
        return RunnerOutput({s.request_id: r for s, r in zip(seqs, results, strict=True)})

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        """Hidden states of the step's tokens (writing their K/V to the cache)."""
        token_ids, positions, meta = inputs.tensors(self.device)
        hidden: torch.Tensor = self.model(token_ids, positions, meta)
        return hidden

    def score(self, token_ids: list[int]) -> torch.Tensor:
        """Logits at every position of one sequence, without touching the KV cache."""
        n = len(token_ids)
        prefill = PrefillInputs(0, n, n, None)
        inputs = ModelInputs(list(token_ids), list(range(n)), None, prefills=[prefill])
        with torch.inference_mode():
            return self.model.compute_logits(self.forward(inputs)).float()

    def watch(self, on_failure: Callable[[BaseException], None]) -> None:
        """Have `on_failure` called (from any thread) if the runner can no longer run steps."""

    def close(self) -> None:
        """Release what the runner holds beyond memory (other ranks' processes)."""
