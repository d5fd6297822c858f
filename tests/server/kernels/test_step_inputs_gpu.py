"""On a GPU: a step's packed inputs reach the device in one non-blocking copy from the pinned
host buffer, the buffer is refilled only after that copy (several steps of different sizes in
a row), inputs built elsewhere (another rank's) are staged through it; and prefill attention
on the device (SDPA's CUDA kernels, bottom-right mask after a prefix) matches the CPU path.
Skipped without CUDA (the same logic is tested on CPU in tests/server/unit/)."""

from __future__ import annotations

import pickle
import random

import pytest
import torch
from step_batches import random_batch

from llm_server.engine.input_buffer import InputBuffer
from llm_server.engine.model_inputs import build_inputs
from llm_server.layers.attention import AttentionMetadata, PagedAttention, PrefillSegment

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CUDA = torch.device("cuda")


def test_each_step_arrives_whole_through_the_pinned_buffer() -> None:
    rng = random.Random(0)
    buffer = InputBuffer(CUDA)
    for _ in range(20):
        inputs, _ = build_inputs(random_batch(rng, 16), 16, buffer.host)
        expected = inputs.packed.tolist()  # before the next step may overwrite the host buffer
        assert buffer._host.is_pinned()
        on_device = buffer.to_device(inputs.packed)
        step = inputs.on_device(on_device)
        assert on_device.device.type == "cuda" and on_device.tolist() == expected
        assert step.token_ids.device.type == "cuda"


def test_inputs_built_elsewhere_are_staged() -> None:
    batch = random_batch(random.Random(1), 16)
    inputs, _ = build_inputs(batch, 16)
    received = pickle.loads(pickle.dumps(inputs))
    assert InputBuffer(CUDA).to_device(received.packed).tolist() == inputs.packed.tolist()


@pytest.mark.parametrize("cached", [0, 40])
def test_prefill_attention_on_cuda_matches_cpu(cached: int) -> None:
    gen = torch.Generator().manual_seed(cached)
    heads, kv_heads, dim, block, n = 9, 3, 64, 16, 37
    attn = PagedAttention(heads, kv_heads, dim)
    caches = [torch.randn(8, block, kv_heads, dim, generator=gen) for _ in range(2)]
    q = torch.randn(2 * n, heads, dim, generator=gen)
    k, v = (torch.randn(2 * n, kv_heads, dim, generator=gen) for _ in range(2))
    tables = [torch.tensor([5, 1, 6, 0, 2][: -(-(cached + n) // block)]), torch.tensor([7, 3, 4])]
    slots = torch.cat(
        [
            t[torch.arange(s, s + n) // block] * block + torch.arange(s, s + n) % block
            for t, s in zip(tables, (cached, 0), strict=True)
        ]
    )
    outputs = []
    for device in (torch.device("cpu"), CUDA):
        attn.k_cache, attn.v_cache = (c.to(device) for c in caches)
        prefills = [
            PrefillSegment(0, n, cached + n, tables[0].to(device) if cached else None),
            PrefillSegment(n, n, n, None),
        ]
        meta = AttentionMetadata(slot_mapping=slots.to(device), prefills=prefills)
        outputs.append(attn(q.to(device), k.to(device), v.to(device), meta).cpu())
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)
