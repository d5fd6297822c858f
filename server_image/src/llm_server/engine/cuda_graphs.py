"""Decode steps replayed as CUDA graphs.

A decode step launches a few hundred small kernels (norms, matmuls, rotary, attention in
every layer); at small batches their launch overhead, not the GPU's work, sets the step
time. At start-up the model's decode forward is captured once per batch size in
`capture_sizes` (1, 2, 4, ..., max_num_seqs), reading static input buffers. A step of n
decodes copies its inputs into the buffers of the next captured size, fills the extra rows
with copies of its last row (they compute the same K/V and write it to that row's own slot,
so the cache ends as an eager step leaves it), replays, and returns the first n output rows.

Never on CPU, nor under tensor parallelism (every rank would have to capture its
collectives together). A step with a prefill chunk, more decodes than the largest captured
size, or a block table wider than max_model_len runs eagerly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from llm_server.layers.attention import AttentionMetadata
from llm_server.models.llama import LlamaForCausalLM

log = logging.getLogger(__name__)


def capture_sizes(max_num_seqs: int) -> list[int]:
    """Powers of two below max_num_seqs, then max_num_seqs itself (ascending)."""
    powers = [1 << i for i in range(max_num_seqs.bit_length()) if 1 << i < max_num_seqs]
    return [*powers, max_num_seqs]


def padded_size(num_decodes: int, sizes: Sequence[int]) -> int | None:
    """The smallest captured size that holds `num_decodes` rows; None: none does (eager)."""
    return next((size for size in sizes if size >= num_decodes), None)


def copy_padded(dst: torch.Tensor, src: torch.Tensor, size: int) -> None:
    """Write src's n rows into dst's first n, and src's last row into dst's rows n..size-1.

    A 2-D src (block tables) fills only its own columns: the kernel reads a row's table no
    further than its context length, so older entries past them are never used.
    """
    region = dst[:size] if src.dim() == 1 else dst[:size, : src.shape[1]]
    rows = src.shape[0]
    region[:rows].copy_(src)
    region[rows:].copy_(src[-1:].expand_as(region[rows:]))


class DecodeGraphs:
    """One captured decode forward per batch size, over shared static input buffers."""

    def __init__(
        self, model: LlamaForCausalLM, sizes: Sequence[int], max_blocks: int, device: torch.device
    ) -> None:
        self.model = model
        self.sizes = sorted(sizes)
        self.max_blocks = max_blocks
        rows = self.sizes[-1]

        def buffer(*shape: int, fill: int = 0) -> torch.Tensor:
            return torch.full(shape, fill, dtype=torch.long, device=device)

        # Capture-time values: every row decodes position 0 of a one-token context in block 0
        # (the cache is still empty at start-up, so what this writes there is overwritten).
        self.token_ids, self.positions, self.slots = buffer(rows), buffer(rows), buffer(rows)
        self.block_tables = buffer(rows, max_blocks)
        self.context_lens = buffer(rows, fill=1)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def meta(self, size: int) -> AttentionMetadata:
        """Attention metadata over the first `size` rows of the static buffers."""
        return AttentionMetadata(
            slot_mapping=self.slots[:size],
            num_decode_tokens=size,
            decode_block_tables=self.block_tables[:size],
            decode_context_lens=self.context_lens[:size],
        )

    def capture(self) -> None:
        """Capture every size, the largest first so the smaller ones reuse its memory pool."""
        pool = torch.cuda.graph_pool_handle()
        with torch.inference_mode():
            for size in reversed(self.sizes):
                meta = self.meta(size)
                inputs = (self.token_ids[:size], self.positions[:size])
                # One eager run first, on a side stream as capture requires: Triton compiles
                # its kernels and cuBLAS picks its algorithms outside the graph.
                stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    self.model(*inputs, meta)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    hidden = self.model(*inputs, meta)
                self.graphs[size] = (graph, hidden)
        torch.cuda.synchronize()

    def stage(
        self, token_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata
    ) -> int | None:
        """Copy a decode step's inputs into the buffers, padded to the next captured size, and
        return that size; None (nothing copied) when the step must run eagerly."""
        num_decodes = meta.num_decode_tokens
        tables, lens = meta.decode_block_tables, meta.decode_context_lens
        if (
            meta.prefills
            or num_decodes == 0
            or num_decodes != token_ids.shape[0]
            or meta.slot_mapping is None
            or tables is None
            or lens is None
            or tables.shape[1] > self.max_blocks
        ):
            return None
        size = padded_size(num_decodes, self.sizes)
        if size is None:
            return None
        copy_padded(self.token_ids, token_ids, size)
        copy_padded(self.positions, positions, size)
        copy_padded(self.slots, meta.slot_mapping, size)
        copy_padded(self.block_tables, tables, size)
        copy_padded(self.context_lens, lens, size)
        return size

    def run(
        self, token_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor | None:
        """The step's hidden states from a replay; None when the step must run eagerly.

        The result is a view of the graph's output buffer: valid until the next replay.
        """
        size = self.stage(token_ids, positions, meta)
        if size is None:
            return None
        graph, hidden = self.graphs[size]
        graph.replay()
        return hidden[: meta.num_decode_tokens]


def capture_decode_graphs(
    model: LlamaForCausalLM, max_num_seqs: int, max_model_len: int, block_size: int,
    device: torch.device,
) -> DecodeGraphs | None:  # fmt: skip
    """Captured decode graphs on CUDA; None on CPU, or (logged) when a capture fails, so the
    server still serves, eagerly."""
    if device.type != "cuda":
        return None
    graphs = DecodeGraphs(
        model, capture_sizes(max_num_seqs), -(-max_model_len // block_size), device
    )
    try:
        graphs.capture()
    except Exception:
        log.exception("CUDA graph capture failed; decode steps run eagerly (--no-cuda-graphs "
                      "skips the capture)")  # fmt: skip
        return None
    log.info("captured decode CUDA graphs for batch sizes %s", graphs.sizes)
    return graphs
