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
    _prefill_plan: list[PrefillRun] | None = field(default=None, init=False, repr=False)

    def prefill_plan(self) -> list[PrefillRun]:
        """The prefill chunks as attention calls, with their masks: built by the first layer,
        reused by the others. Adjacent chunks of one length with nothing cached before them
        are one batched causal call; a chunk after a cached prefix is a call of its own."""
        if self._prefill_plan is None:
            plan: list[PrefillRun] = []
            for seg in self.prefills:
                start, n = seg.token_start, seg.num_tokens
                if seg.block_table is not None and seg.context_len > n:
                    plan.append(PrefillRun.after_prefix(seg))
                    continue
                last = plan[-1] if plan else None
                if last is not None and last.joins(start, n):
                    plan[-1] = PrefillRun(slice(last.rows.start, start + n), last.batch + 1)
                else:
                    plan.append(PrefillRun(slice(start, start + n), 1))
            self._prefill_plan = plan
        return self._prefill_plan

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


@dataclass(frozen=True)
class PrefillRun:
    """Prefill rows attended in one call: `batch` chunks of one length, causal over their own
    keys; or one chunk after a cached prefix, over its blocks through `mask`."""

    rows: slice  # of the step's token rows
    batch: int
    blocks: torch.Tensor | None = None  # [blocks] long: the chunk's context (prefix and itself)
    context_len: int = 0
    mask: torch.Tensor | None = None  # [tokens, context_len] bool: causal, bottom-right aligned

    @classmethod
    def after_prefix(cls, seg: PrefillSegment) -> PrefillRun:
        assert seg.block_table is not None
        n, context = seg.num_tokens, seg.context_len
        key_pos = torch.arange(context, device=seg.block_table.device)
        mask = key_pos[None, :] <= key_pos[context - n :, None]  # query i sits at context-n+i
        rows = slice(seg.token_start, seg.token_start + n)
        return cls(rows, 1, seg.block_table, context, mask)

    def joins(self, start: int, num_tokens: int) -> bool:
        """Whether a causal chunk of `num_tokens` at row `start` can be batched into this run."""
        tokens = self.rows.stop - self.rows.start
        return self.blocks is None and start == self.rows.stop and tokens == num_tokens * self.batch


def _batched(rows: torch.Tensor, batch: int) -> torch.Tensor:
    """[batch * n, heads, dim] -> [batch, heads, n, dim] (a view)."""
    return rows.view(batch, -1, *rows.shape[1:]).transpose(1, 2)


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
        num_decodes = meta.num_decode_tokens
        runs = meta.prefill_plan()
        if not num_decodes and len(runs) == 1:  # one call covers the step: no copy into `out`
            return self._prefill(q, k, v, runs[0])
        out = torch.empty_like(q)
        if num_decodes:
            out[:num_decodes] = self._decode(q[:num_decodes], meta)
        for run in runs:
            out[run.rows] = self._prefill(q, k, v, run)
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
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, run: PrefillRun
    ) -> torch.Tensor:
        """The run's rows of q, k, v -> its attention output [rows, heads, head_dim]."""
        q = _batched(q[run.rows], run.batch)
        if run.blocks is None:  # nothing cached before: causal over the chunks' own K/V
            keys, values = _batched(k[run.rows], run.batch), _batched(v[run.rows], run.batch)
        else:  # the prefix and the chunk, read from the cache in one gather each
            assert self.k_cache is not None and self.v_cache is not None
            keys = self._gather(self.k_cache, run.blocks, 1)[:, :, : run.context_len]
            values = self._gather(self.v_cache, run.blocks, 1)[:, :, : run.context_len]
            keys, values = keys.to(q.dtype), values.to(q.dtype)  # fp8 cache: upcast on read
        # is_causal without a mask lets SDPA pick its flash kernels; GQA without repeating K/V.
        out = F.scaled_dot_product_attention(
            q,
            keys,
            values,
            attn_mask=run.mask,
            is_causal=run.blocks is None,
            scale=self.scale,
            enable_gqa=True,
        )
        return out.transpose(1, 2).flatten(0, 1)
