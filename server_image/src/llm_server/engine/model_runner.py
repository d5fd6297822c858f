"""Execute one scheduled step: build the flat batch, run the model once, sample.

All decode sequences share one forward pass with every prefill chunk; logits are computed
only for the rows that sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm_server.engine.scheduler import SchedulerOutput
from llm_server.layers.attention import AttentionMetadata, PrefillSegment
from llm_server.layers.sampler import SampledToken, sample
from llm_server.models.llama import LlamaForCausalLM


@dataclass(frozen=True)
class RunnerOutput:
    sampled: dict[str, SampledToken]  # request_id -> the token sampled this step


def kv_block_bytes(model: LlamaForCausalLM, block_size: int, dtype: torch.dtype) -> int:
    spec = model.spec
    per_token = 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim
    return per_token * block_size * torch.empty((), dtype=dtype).element_size()


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
        spec = model.spec
        shape = (num_blocks, block_size, spec.num_kv_heads, spec.head_dim)
        for attn in model.attention_layers():
            attn.k_cache = torch.zeros(shape, dtype=dtype, device=device)
            attn.v_cache = torch.zeros(shape, dtype=dtype, device=device)

    def _tensor(self, values: list[int] | list[list[int]]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)

    def execute(self, batch: SchedulerOutput) -> RunnerOutput:
        block_size = self.block_size
        tokens: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        sample_rows: list[int] = []
        sampling_chunks = []
        for chunk in batch.decodes:
            seq, pos = chunk.seq, chunk.start
            tokens.extend(seq.token_ids(pos, pos + 1))
            positions.append(pos)
            slots.append(seq.block_table[pos // block_size] * block_size + pos % block_size)
            if chunk.samples:
                sample_rows.append(len(tokens) - 1)
                sampling_chunks.append(chunk)
        meta = AttentionMetadata(slot_mapping=None, num_decode_tokens=len(batch.decodes))
        if batch.decodes:
            lens = [c.start + 1 for c in batch.decodes]
            width = max(-(-n // block_size) for n in lens)
            tables = [c.seq.block_table[:width] for c in batch.decodes]
            padded = [t + [0] * (width - len(t)) for t in tables]
            meta.decode_block_tables = self._tensor(padded)
            meta.decode_context_lens = self._tensor(lens)
        for chunk in batch.prefills:
            seq, start, n = chunk.seq, chunk.start, chunk.num_tokens
            context_len = start + n
            table = seq.block_table[: -(-context_len // block_size)]
            meta.prefills.append(
                PrefillSegment(len(tokens), n, context_len, self._tensor(table) if start else None)
            )
            tokens.extend(seq.token_ids(start, context_len))
            positions.extend(range(start, context_len))
            slots.extend(
                table[p // block_size] * block_size + p % block_size
                for p in range(start, context_len)
            )
            if chunk.samples:
                sample_rows.append(len(tokens) - 1)
                sampling_chunks.append(chunk)
        meta.slot_mapping = self._tensor(slots)
        with torch.inference_mode():
            hidden = self.model(self._tensor(tokens), self._tensor(positions), meta)
            if not sample_rows:
                return RunnerOutput(sampled={})
            logits = self.model.compute_logits(hidden[self._tensor(sample_rows)])
            seqs = [c.seq for c in sampling_chunks]
            results = sample(logits, [s.params for s in seqs], [s.generator for s in seqs])
        return RunnerOutput({s.request_id: r for s, r in zip(seqs, results, strict=True)})

    def score(self, token_ids: list[int]) -> torch.Tensor:
        """Logits at every position of one sequence, without touching the KV cache."""
        n = len(token_ids)
        meta = AttentionMetadata(slot_mapping=None, prefills=[PrefillSegment(0, n, n, None)])
        with torch.inference_mode():
            ids = self._tensor(token_ids)
            hidden = self.model(ids, torch.arange(n, device=self.device), meta)
            return self.model.compute_logits(hidden).float()
