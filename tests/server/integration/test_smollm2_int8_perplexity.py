"""Quantization on real weights: SmolLM2-135M-Instruct's perplexity on real English text, int8
within PERPLEXITY_BOUND of the unquantized model, int4 g32 equal to it on this Q4_1 file (the
same GGUF file, our model code, in-process)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from logits_reference import smollm2_gguf

from llm_server.layers.attention import AttentionMetadata, PrefillSegment
from llm_server.models.loader import LoadedModel, load_model

TEXT = Path("/usr/share/common-licenses/Apache-2.0")  # real English that ships with Debian
TOKENS = 384  # enough for a stable figure, short enough to stay a few seconds on CPU
# int8 per-channel measured +0.4 % on this model (issue 17); 2 % leaves room, not regressions.
PERPLEXITY_BOUND = 1.02


def perplexity(loaded: LoadedModel, ids: list[int]) -> float:
    """exp(mean next-token NLL) over `ids` in one prefill without a KV cache."""
    n = len(ids)
    meta = AttentionMetadata(slot_mapping=None, prefills=[PrefillSegment(0, n, n, None)])
    with torch.inference_mode():
        hidden = loaded.model(torch.tensor(ids), torch.arange(n), meta)
        log_probs = F.log_softmax(loaded.model.compute_logits(hidden).float(), dim=-1)
    nll = -log_probs[:-1].gather(1, torch.tensor(ids[1:])[:, None]).mean()
    return math.exp(float(nll))


@pytest.fixture(scope="module")
def unquantized() -> tuple[list[int], float]:
    """The text's first TOKENS token ids and the unquantized model's perplexity on them."""
    if not TEXT.is_file():  # Debian's base-files ships it; CI runs on Debian
        if os.environ.get("CI"):
            pytest.fail(f"{TEXT} is not on this machine")
        pytest.skip(f"{TEXT} is not on this machine")
    loaded = load_model(smollm2_gguf(), "fp32", "cpu")
    ids = loaded.tokenizer.encode(TEXT.read_text())[:TOKENS]
    assert len(ids) == TOKENS
    return ids, perplexity(loaded, ids)


def test_int8_perplexity_is_within_bound_of_unquantized(
    unquantized: tuple[list[int], float],
) -> None:
    ids, reference = unquantized
    quantized = load_model(smollm2_gguf(), "fp32", "cpu", quantization="int8")
    assert quantized.quantization.method == "int8"
    int8 = perplexity(quantized, ids)
    assert reference < 20, "a real model reads a license easily (random weights: ~49,000)"
    assert int8 / reference < PERPLEXITY_BOUND, (reference, int8)


def test_int4_g32_keeps_a_q4_1_file_as_it_is(unquantized: tuple[list[int], float]) -> None:
    """int4 groups of 32 with a step and an offset are Q4_1's blocks: the dequantized file
    quantizes back to the same levels, so nothing is lost twice (15.714 both, measured)."""
    ids, reference = unquantized
    quantized = load_model(smollm2_gguf(), "fp32", "cpu", quantization="int4", quant_group_size=32)
    assert perplexity(quantized, ids) == pytest.approx(reference, rel=1e-3)
