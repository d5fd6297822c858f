"""Logits processors that depend on a sequence's tokens: repetition, frequency and presence
penalties, and min_tokens (no EOS or stop token before then), as vLLM and transformers define
them.

Each works on the whole batch at once: the rows that need it are gathered, their token
histories become one padded tensor, and the penalty is a few tensor ops over [rows, vocab].
Which rows and which penalties apply is decided from the parameters on the host, and host
lists reach the device without a blocking copy: no host sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from llm_server.layers.host_lists import to_device
from llm_server.sampling_params import SamplingParams


class TokenHistory(Protocol):
    """What a sequence exposes to the sampler (engine.sequence.Sequence satisfies it)."""

    prompt_token_ids: list[int]
    output_token_ids: list[int]
    banned_before_min_tokens: tuple[int, ...]  # EOS (unless ignore_eos) + stop_token_ids


def apply_min_tokens(
    logits: torch.Tensor, params: Sequence[SamplingParams], histories: Sequence[TokenHistory]
) -> torch.Tensor:
    """-inf for the stop tokens of rows that have generated fewer than min_tokens tokens."""
    rows = [
        i
        for i, (p, h) in enumerate(zip(params, histories, strict=True))
        if len(h.output_token_ids) < p.min_tokens and h.banned_before_min_tokens
    ]
    if not rows:
        return logits
    vocab = logits.shape[-1]
    banned = _padded([histories[i].banned_before_min_tokens for i in rows], vocab, logits.device)
    mask = _row_mask(banned, len(rows), vocab)
    row_index = to_device(rows, torch.long, logits.device)
    logits[row_index] = logits[row_index].masked_fill(mask, float("-inf"))
    return logits


def apply_penalties(
    logits: torch.Tensor, params: Sequence[SamplingParams], histories: Sequence[TokenHistory]
) -> torch.Tensor:
    """Penalties on the raw logits (before temperature), in place for the penalized rows.

    repetition_penalty divides positive logits and multiplies negative ones of every token seen
    in the prompt or the output (transformers' and vLLM's rule); frequency and presence
    penalties subtract per occurrence / once for tokens of the output only (OpenAI's rule).
    """
    rows = [i for i, p in enumerate(params) if p.has_penalties]
    if not rows:
        return logits
    device, vocab = logits.device, logits.shape[-1]
    selected = [params[i] for i in rows]
    row_index = to_device(rows, torch.long, device)
    penalized = logits[row_index]
    outputs = _padded([histories[i].output_token_ids for i in rows], vocab, device)
    counts = torch.zeros(len(rows), vocab + 1, device=device)
    counts.scatter_add_(1, outputs, torch.ones_like(outputs, dtype=counts.dtype))
    counts = counts[:, :vocab]  # the last column absorbed the padding
    in_output = counts > 0
    if any(p.repetition_penalty != 1.0 for p in selected):
        repetition = to_device([p.repetition_penalty for p in selected], torch.float32, device)
        repetition = repetition[:, None]
        prompts = _padded([histories[i].prompt_token_ids for i in rows], vocab, device)
        seen = _row_mask(prompts, len(rows), vocab) | in_output
        scaled = torch.where(penalized > 0, penalized / repetition, penalized * repetition)
        penalized = torch.where(seen, scaled, penalized)
    frequency = to_device([p.frequency_penalty for p in selected], torch.float32, device)[:, None]
    presence = to_device([p.presence_penalty for p in selected], torch.float32, device)[:, None]
    penalized = penalized - frequency * counts - presence * in_output.to(penalized.dtype)
    logits[row_index] = penalized
    return logits


def _padded(rows: Sequence[Sequence[int]], pad: int, device: torch.device) -> torch.Tensor:
    """Token lists as one [rows, longest] tensor on `device`; `pad` (= vocab) marks the padding,
    and ids outside the logits' vocabulary are treated as padding too."""
    width = max((len(row) for row in rows), default=0) or 1
    table = torch.tensor([[*row, *[pad] * (width - len(row))] for row in rows], dtype=torch.long)
    return table.clamp_(max=pad).to(device, non_blocking=True)


def _row_mask(ids: torch.Tensor, num_rows: int, vocab: int) -> torch.Tensor:
    mask = torch.zeros(num_rows, vocab + 1, dtype=torch.bool, device=ids.device)
    mask.scatter_(1, ids, True)
    return mask[:, :vocab]
