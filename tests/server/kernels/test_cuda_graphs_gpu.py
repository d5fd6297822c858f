"""On a GPU: decode steps replayed from CUDA graphs against the same steps run eagerly, for a
single forward at a padded batch size and for whole greedy generations through the engine.
Skipped without CUDA (the padding itself is tested on CPU in tests/server/unit/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm_server.engine.config import EngineConfig
from llm_server.engine.cuda_graphs import DecodeGraphs
from llm_server.engine.engine import LLMEngine
from llm_server.engine_factory import build_engine
from llm_server.layers.attention import AttentionMetadata
from llm_server.sampling_params import SamplingParams
from llm_server.tiny_model import build_tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

PROMPTS = ["the scheduler batches", "every request in the queue waits for a free block", "kv"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("gpu-graphs"), hidden_size=128,
                            intermediate_size=256)  # fmt: skip


def _engine(model_dir: Path, cuda_graphs: bool) -> LLMEngine:
    config = EngineConfig(model=str(model_dir), device="cuda", dtype="fp32", num_kv_blocks=64,
                          max_model_len=256, max_num_seqs=8, cuda_graphs=cuda_graphs)  # fmt: skip
    return build_engine(config)


def test_replay_equals_the_eager_forward(model_dir: Path) -> None:
    engine = _engine(model_dir, cuda_graphs=True)
    graphs = engine.runner.decode_graphs
    assert isinstance(graphs, DecodeGraphs) and sorted(graphs.graphs) == [1, 2, 4, 8]
    lens = [9, 33, 70]  # three decodes replay at size 4; blocks 0-5, 6-8 ... of a 16-token block
    tables = torch.tensor([[0, 0, 0, 0, 0], [1, 2, 3, 0, 0], [4, 5, 6, 7, 8]], device="cuda")
    slots = torch.tensor([(t[(n - 1) // 16] * 16 + (n - 1) % 16).item()
                          for t, n in zip(tables, lens, strict=True)], device="cuda")  # fmt: skip
    meta = AttentionMetadata(
        slot_mapping=slots, num_decode_tokens=3, decode_block_tables=tables,
        decode_context_lens=torch.tensor(lens, device="cuda"),
    )  # fmt: skip
    token_ids = torch.tensor([5, 6, 7], device="cuda")
    positions = torch.tensor(lens, device="cuda") - 1
    model = engine.runner.model
    with torch.inference_mode():
        for layer in model.attention_layers():  # earlier tokens' K/V
            assert layer.k_cache is not None and layer.v_cache is not None
            layer.k_cache.normal_()
            layer.v_cache.normal_()
        eager = model(token_ids, positions, meta).clone()
        replayed = graphs.run(token_ids, positions, meta)
    assert replayed is not None
    torch.testing.assert_close(replayed, eager, rtol=1e-4, atol=1e-4)


def test_greedy_generation_with_graphs_equals_eager(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replays = []
    original = DecodeGraphs.run

    def counted(self: DecodeGraphs, *args: object) -> torch.Tensor | None:
        out = original(self, *args)  # type: ignore[arg-type]
        replays.append(out is not None)
        return out

    monkeypatch.setattr(DecodeGraphs, "run", counted)
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    results = []
    for cuda_graphs in (True, False):
        engine = _engine(model_dir, cuda_graphs)
        prompts = {f"r{i}": engine.tokenizer(p).input_ids for i, p in enumerate(PROMPTS)}
        out = engine.generate(prompts, params)
        results.append({rid: [e.token_id for e in events] for rid, events in out.items()})
    assert any(replays), "no decode step was replayed from a graph"
    graphs, eager = results
    # fp32 both ways; a padded batch may pick another matmul kernel, so logits can differ by
    # rounding: a greedy path agrees unless two logits tie within ~1e-5.
    for rid in eager:
        assert graphs[rid][:12] == eager[rid][:12], rid
