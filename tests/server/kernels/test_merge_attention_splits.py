"""The split-K merge kernel against its torch reference, and the reference against attention
over the whole context: partials of disjoint key slices, weighted by their log-sum-exp, are
the attention over all keys; an empty slice (lse = -inf) weighs nothing."""

from __future__ import annotations

import itertools

import torch
from kernel_tolerance import DEVICE, assert_close

from llm_server.kernels.merge_attention_splits import (
    merge_attention_splits,
    merge_attention_splits_reference,
)


def _partials(
    scores: torch.Tensor, values: torch.Tensor, cuts: list[int]
) -> tuple[torch.Tensor, ...]:
    """Each slice's normalized output and log-sum-exp: scores [B, H, T], values [B, H, T, D]."""
    outs, lses = [], []
    for start, end in itertools.pairwise(cuts):
        part = scores[..., start:end]
        if end == start:  # a slice past the context
            outs.append(torch.zeros_like(values[..., 0, :]))
            lses.append(torch.full_like(scores[..., 0], float("-inf")))
            continue
        outs.append(torch.einsum("bht,bhtd->bhd", part.softmax(-1), values[..., start:end, :]))
        lses.append(part.logsumexp(-1))
    return torch.stack(outs, dim=2), torch.stack(lses, dim=2)


def test_merge_of_slices_is_attention_over_all_keys() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 5, 40, generator=generator) * 4
    values = torch.randn(3, 5, 40, 24, generator=generator)
    partials, lse = _partials(scores, values, [0, 7, 20, 40, 40])  # the last slice is empty
    whole = torch.einsum("bht,bhtd->bhd", scores.softmax(-1), values)
    torch.testing.assert_close(merge_attention_splits_reference(partials, lse), whole)
    out = torch.empty(3, 5, 24, device=DEVICE)
    merge_attention_splits(partials.to(DEVICE), lse.to(DEVICE), out)
    assert_close(out, whole.to(DEVICE))


def test_merge_kernel_matches_reference_in_the_output_dtype() -> None:
    generator = torch.Generator().manual_seed(1)
    partials = torch.randn(2, 4, 5, 40, generator=generator)  # head size not a power of two
    lse = torch.randn(2, 4, 5, generator=generator) * 3
    lse[0, :, 2:] = float("-inf")  # sequence 0 filled only two of its splits
    expected = merge_attention_splits_reference(partials, lse)
    dtype = torch.bfloat16 if DEVICE.type == "cuda" else torch.float32
    out = torch.empty(2, 4, 40, device=DEVICE, dtype=dtype)
    merge_attention_splits(partials.to(DEVICE), lse.to(DEVICE), out)
    assert_close(out, expected.to(DEVICE, dtype))
