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
    prefills: list[PrefillSegment] = field(default_factory=list)


class PagedAttention(nn.Module):
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
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
            flat_k.index_copy_(0, meta.slot_mapping, k)
            flat_v.index_copy_(0, meta.slot_mapping, v)
        out = torch.empty_like(q)
        num_decodes = meta.num_decode_tokens
        if num_decodes:
            out[:num_decodes] = self._decode(q[:num_decodes], meta)
        for seg in meta.prefills:
            rows = slice(seg.token_start, seg.token_start + seg.num_tokens)
            out[rows] = self._prefill(q[rows], k[rows], v[rows], seg)
        return out

    def _decode(self, q: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """One query per sequence, all sequences at once: gather whole blocks by index."""
        assert self.k_cache is not None and self.v_cache is not None
        tables, lens = meta.decode_block_tables, meta.decode_context_lens
        assert tables is not None and lens is not None
        batch = q.shape[0]
        keys = self._gather(self.k_cache, tables.reshape(-1), batch)
        values = self._gather(self.v_cache, tables.reshape(-1), batch)
        positions = torch.arange(keys.shape[2], device=q.device)
        valid = positions[None, :] < lens[:, None]
        out = F.scaled_dot_product_attention(
            q.view(batch, self.num_heads, 1, self.head_dim),
            keys,
            values,
            attn_mask=valid[:, None, None, :],
            scale=self.scale,
            enable_gqa=True,  # GQA without materialising repeated K/V
        )
        return out.view(batch, self.num_heads, self.head_dim)

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
            query_pos = torch.arange(seg.context_len - n, seg.context_len, device=q.device)
            key_pos = torch.arange(seg.context_len, device=q.device)
            mask, causal = key_pos[None, :] <= query_pos[:, None], False
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1),
            keys,
            values,
            attn_mask=mask,
            is_causal=causal,
            scale=self.scale,
            enable_gqa=True,
        )
        return out.transpose(0, 1)
