"""Attention over a paged KV cache: the torch reference path (runs on CPU and GPU).

The cache of one layer is [num_blocks, block_size, kv_heads, head_dim]; a sequence owns a list
of blocks (its block table). A step's tokens are flattened: decode tokens first (one per
sequence, batched together), then each prefill chunk. New K/V are written to their slots first,
then read back through the block tables, so a chunk sees its own keys and all cached ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PrefillSegment:
    token_start: int  # offset of this chunk in the step's flat token tensor
    num_tokens: int  # query length of the chunk
    context_len: int  # tokens in the cache once this chunk is written (prefix + chunk)
    block_table: torch.Tensor | None  # [num_blocks] long; None when there is no cache


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor | None  # [num_tokens] long; None: run without a KV cache
    num_decode_tokens: int = 0
    decode_block_tables: torch.Tensor | None = None  # [num_decodes, max_blocks] long
    decode_context_lens: torch.Tensor | None = None  # [num_decodes] long
    # (end row, blocks) per group of decode rows sorted by length: each group gathers and
    # attends only up to its own longest sequence; empty: one group, the whole table.
    decode_groups: list[tuple[int, int]] = field(default_factory=list)
    prefills: list[PrefillSegment] = field(default_factory=list)
    _decode_plan: list[DecodeGroup] | None = field(default=None, init=False, repr=False)

    def decode_plan(self, block_size: int) -> list[DecodeGroup]:
        """The decode groups' gather indices and masks: built by the first layer, reused by
        the others (every layer has the same block tables)."""
        if self._decode_plan is None:
            tables, lens = self.decode_block_tables, self.decode_context_lens
            assert tables is not None and lens is not None
            positions = torch.arange(tables.shape[1] * block_size, device=tables.device)
            valid = positions[None, :] < lens[:, None]
            plan, start = [], 0
            for end, num_blocks in self.decode_groups or [(tables.shape[0], tables.shape[1])]:
                rows = slice(start, end)
                keys = valid[rows, : num_blocks * block_size]
                plan.append(DecodeGroup(rows, tables[rows, :num_blocks].reshape(-1), keys))
                start = end
            self._decode_plan = plan
        return self._decode_plan


@dataclass(frozen=True)
class DecodeGroup:
    rows: slice  # of the step's decode rows
    blocks: torch.Tensor  # [rows * blocks] long: each row's blocks, flattened
    valid: torch.Tensor  # [rows, blocks * block_size] bool: gathered keys inside the context


def _store(cache: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> None:
    """Write K or V rows into their slots, cast to the cache's dtype (fp8 through its bytes:
    index_copy_ has no fp8 kernel on CPU)."""
    values = values.to(cache.dtype)
    if cache.element_size() == 1:
        cache, values = cache.view(torch.uint8), values.view(torch.uint8)
    cache.index_copy_(0, slots, values)


class PagedAttention(nn.Module):
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.kv_cache_dtype: torch.dtype | None = None  # set by the loader; None: compute dtype
        # Set by the model runner once the cache is allocated.
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        """q: [T, heads, head_dim]; k, v: [T, kv_heads, head_dim] -> [T, heads, head_dim]."""
        if meta.slot_mapping is not None:
            assert self.k_cache is not None and self.v_cache is not None
            flat_k = self.k_cache.view(-1, self.num_kv_heads, self.head_dim)
            flat_v = self.v_cache.view(-1, self.num_kv_heads, self.head_dim)
            _store(flat_k, meta.slot_mapping, k)
            _store(flat_v, meta.slot_mapping, v)
        out = torch.empty_like(q)
        num_decodes = meta.num_decode_tokens
        if num_decodes:
            out[:num_decodes] = self._decode(q[:num_decodes], meta)
        for seg in meta.prefills:
            rows = slice(seg.token_start, seg.token_start + seg.num_tokens)
            out[rows] = self._prefill(q[rows], k[rows], v[rows], seg)
        return out

    def _decode(self, q: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """One query per sequence, in groups of similar length: gather whole blocks by index."""
        assert self.k_cache is not None and self.v_cache is not None
        tables, lens = meta.decode_block_tables, meta.decode_context_lens
        assert tables is not None and lens is not None
        if q.is_cuda:  # the Triton kernel reads the blocks in place (no gathered copy)
            from llm_server.kernels.paged_decode_attention import paged_decode_attention

            return paged_decode_attention(q, self.k_cache, self.v_cache, tables, lens, self.scale)
        plan = meta.decode_plan(self.k_cache.shape[1])
        if len(plan) == 1:
            return self._decode_group(q, plan[0])
        out = torch.empty_like(q)
        for group in plan:
            out[group.rows] = self._decode_group(q[group.rows], group)
        return out

    def _decode_group(self, q: torch.Tensor, group: DecodeGroup) -> torch.Tensor:
        """Gather the group's blocks (up to its longest sequence) and attend, masking the rest."""
        assert self.k_cache is not None and self.v_cache is not None
        batch = q.shape[0]
        # .to(q.dtype): an fp8 cache is upcast on read (a no-op otherwise)
        keys = self._gather(self.k_cache, group.blocks, batch).to(q.dtype)
        values = self._gather(self.v_cache, group.blocks, batch).to(q.dtype)
        # The query heads sharing a KV head become that head's query rows, so each KV head is
        # read once per sequence rather than once per query head (same result as GQA).
        per_kv_head = self.num_heads // self.num_kv_heads
        out = F.scaled_dot_product_attention(
            q.reshape(batch, self.num_kv_heads, per_kv_head, self.head_dim),
            keys,
            values,
            attn_mask=group.valid[:, None, None, :],
            scale=self.scale,
        )
        return out.reshape(batch, self.num_heads, self.head_dim)

    def _gather(self, cache: torch.Tensor, blocks: torch.Tensor, rows: int) -> torch.Tensor:
        """Blocks -> [rows, kv_heads, tokens, head_dim] (a strided view, no second copy)."""
        gathered = cache.index_select(0, blocks)
        return gathered.view(rows, -1, self.num_kv_heads, self.head_dim).transpose(1, 2)

    def _prefill(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seg: PrefillSegment
    ) -> torch.Tensor:
        n = seg.num_tokens
        if seg.context_len == n or seg.block_table is None:
            # Nothing cached before this chunk: plain causal attention over its own K/V.
            keys, values, mask, causal = k.transpose(0, 1), v.transpose(0, 1), None, True
        else:
            assert self.k_cache is not None and self.v_cache is not None
            keys = self._gather(self.k_cache, seg.block_table, 1)[0, :, : seg.context_len]
            values = self._gather(self.v_cache, seg.block_table, 1)[0, :, : seg.context_len]
            keys, values = keys.to(q.dtype), values.to(q.dtype)  # fp8 cache: upcast on read
            query_pos = torch.arange(seg.context_len - n, seg.context_len, device=q.device)
            key_pos = torch.arange(seg.context_len, device=q.device)
            mask, causal = key_pos[None, :] <= query_pos[:, None], False
        # 4-D (a batch of one): on CPU, 3-D inputs fall back to the slow math kernel.
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1)[None],
            keys[None],
            values[None],
            attn_mask=mask,
            is_causal=causal,
            scale=self.scale,
            enable_gqa=True,
        )
        return out[0].transpose(0, 1)
