"""int8 on real weights: SmolLM2-135M-Instruct's perplexity on real English text stays within
PERPLEXITY_BOUND of the unquantized model (the same GGUF file, our model code, in-process)."""

from __future__ import annotations

import math
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


@pytest.mark.skipif(not TEXT.is_file(), reason=f"{TEXT} is not on this machine")
def test_int8_perplexity_is_within_bound_of_unquantized() -> None:
    path = smollm2_gguf()
    unquantized = load_model(path, "fp32", "cpu")
    ids = unquantized.tokenizer.encode(TEXT.read_text())[:TOKENS]
    assert len(ids) == TOKENS
    reference = perplexity(unquantized, ids)
    del unquantized
    quantized = load_model(path, "fp32", "cpu", quantization="int8")
    assert quantized.quantization.method == "int8"
    int8 = perplexity(quantized, ids)
    assert reference < 20, "a real model reads a license easily (random weights: ~49,000)"
    assert int8 / reference < PERPLEXITY_BOUND, (reference, int8)
