"""CUDA graphs' pure parts on CPU: the captured batch sizes, the padded size a step replays
at, how inputs are padded, which steps run eagerly, and that a padded decode computes what
the unpadded one does (the extra rows change neither the real rows nor the KV cache). The
replays themselves are compared with eager steps on a GPU (tests/server/kernels/)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from llm_server.cli import parse_config
from llm_server.engine.cuda_graphs import (
    DecodeGraphs,
    capture_decode_graphs,
    capture_sizes,
    copy_padded,
    padded_size,
)
from llm_server.engine.engine import LLMEngine
from llm_server.layers.attention import AttentionMetadata, PrefillSegment

BLOCK = 16


def test_capture_sizes_are_powers_of_two_up_to_max_num_seqs() -> None:
    assert capture_sizes(64) == [1, 2, 4, 8, 16, 32, 64]
    assert capture_sizes(48) == [1, 2, 4, 8, 16, 32, 48]
    assert capture_sizes(1) == [1]
    assert capture_sizes(3) == [1, 2, 3]


def test_a_step_replays_at_the_next_captured_size() -> None:
    sizes = capture_sizes(48)
    assert [padded_size(n, sizes) for n in (1, 2, 3, 5, 16, 17, 33, 48)] == [
        1, 2, 4, 8, 16, 32, 48, 48,
    ]  # fmt: skip
    assert padded_size(49, sizes) is None  # more decodes than captured: eager


def test_padding_repeats_the_last_row_and_keeps_other_columns() -> None:
    dst = torch.full((8, 6), -1)
    copy_padded(dst, torch.tensor([[1, 2, 3], [4, 5, 6]]), size=4)
    assert dst[:4, :3].tolist() == [[1, 2, 3], [4, 5, 6], [4, 5, 6], [4, 5, 6]]
    assert (dst[:, 3:] == -1).all() and (dst[4:] == -1).all()  # beyond the table / the size
    lens = torch.zeros(8, dtype=torch.long)
    copy_padded(lens, torch.tensor([7, 9, 30]), size=4)
    assert lens.tolist() == [7, 9, 30, 30, 0, 0, 0, 0]


def _decode_step(
    engine: LLMEngine, lens: list[int]
) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
    """Decodes of len(lens) sequences whose contexts (blocks laid out one after another) hold
    lens[i] tokens, the last of which each step writes now."""
    tables, slots, first = [], [], 0
    width = max(-(-n // BLOCK) for n in lens)
    for n in lens:
        blocks = list(range(first, first + -(-n // BLOCK)))
        first += len(blocks)
        slots.append(blocks[(n - 1) // BLOCK] * BLOCK + (n - 1) % BLOCK)
        tables.append(blocks + [0] * (width - len(blocks)))
    meta = AttentionMetadata(
        slot_mapping=torch.tensor(slots),
        num_decode_tokens=len(lens),
        decode_block_tables=torch.tensor(tables),
        decode_context_lens=torch.tensor(lens),
    )
    token_ids = torch.arange(7, 7 + len(lens))
    return token_ids, torch.tensor(lens) - 1, meta


def test_a_padded_decode_computes_what_the_unpadded_one_does(
    make_engine: Callable[..., LLMEngine],
) -> None:
    engine = make_engine()
    model = engine.runner.model
    layers = model.attention_layers()
    generator = torch.Generator().manual_seed(0)
    for layer in layers:  # a cache full of earlier tokens' K/V
        assert layer.k_cache is not None and layer.v_cache is not None
        layer.k_cache.copy_(torch.randn(layer.k_cache.shape, generator=generator))
        layer.v_cache.copy_(torch.randn(layer.v_cache.shape, generator=generator))
    token_ids, positions, meta = _decode_step(engine, [5, 40, 17])
    graphs = DecodeGraphs(model, capture_sizes(8), max_blocks=8, device=torch.device("cpu"))
    with torch.inference_mode():
        saved = [(a.k_cache.clone(), a.v_cache.clone()) for a in layers]  # type: ignore[union-attr]
        eager = model(token_ids, positions, meta)
        eager_cache = [(a.k_cache.clone(), a.v_cache.clone()) for a in layers]  # type: ignore[union-attr]
        for layer, (k, v) in zip(layers, saved, strict=True):
            layer.k_cache, layer.v_cache = k, v
        size = graphs.stage(token_ids, positions, meta)
        assert size == 4
        padded = model(graphs.token_ids[:size], graphs.positions[:size], graphs.meta(size))
    torch.testing.assert_close(padded[:3], eager, rtol=1e-5, atol=1e-5)
    for layer, (k, v) in zip(layers, eager_cache, strict=True):
        torch.testing.assert_close(layer.k_cache, k, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer.v_cache, v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["prefill", "too many", "too wide", "no cache write"])
def test_steps_a_graph_cannot_replay_run_eagerly(
    make_engine: Callable[..., LLMEngine], case: str
) -> None:
    engine = make_engine()
    graphs = DecodeGraphs(engine.runner.model, [1, 2], max_blocks=2, device=torch.device("cpu"))
    lens = {"too many": [3, 4, 5], "too wide": [3, 40]}.get(case, [3, 4])
    token_ids, positions, meta = _decode_step(engine, lens)
    if case == "prefill":
        meta.prefills.append(PrefillSegment(2, 1, 1, None))
        token_ids, positions = torch.arange(3), torch.arange(3)
    if case == "no cache write":
        meta.slot_mapping = None
    assert graphs.stage(token_ids, positions, meta) is None


def test_no_graphs_on_cpu(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine()
    model, device = engine.runner.model, torch.device("cpu")
    assert capture_decode_graphs(model, 8, 512, BLOCK, device) is None


def test_cuda_graphs_flag_reaches_the_engine_config() -> None:
    on = parse_config(["--model", "tiny-random"]).engine_config("/m", cuda_available=True)
    off = parse_config(["--model", "tiny-random", "--no-cuda-graphs"])
    assert on.cuda_graphs and not off.engine_config("/m", cuda_available=True).cuda_graphs
