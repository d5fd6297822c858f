"""Prompt logprobs: how likely the model found each prompt token given the ones before it.

The logits at position i score the token at position i + 1. A long chunk is scored in slices
so the [tokens, vocab] fp32 tensor stays small (a 2,048-token chunk of a 150k vocabulary would
otherwise need over a gigabyte).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from llm_server.token_logprobs import TokenLogprobs

SLICE_ROWS = 256


def prompt_logprobs(
    hidden: torch.Tensor,
    compute_logits: Callable[[torch.Tensor], torch.Tensor],
    targets: list[int],
    top_k: int,
) -> list[TokenLogprobs]:
    """hidden: [len(targets), dim], row i the position before targets[i]; raw logprobs."""
    results: list[TokenLogprobs] = []
    for start in range(0, len(targets), SLICE_ROWS):
        rows = hidden[start : start + SLICE_ROWS]
        logprobs = torch.log_softmax(compute_logits(rows).float(), dim=-1)
        wanted = torch.tensor(targets[start : start + SLICE_ROWS], device=logprobs.device)
        chosen = logprobs.gather(1, wanted[:, None])
        ranks = (logprobs > chosen).sum(dim=-1) + 1  # vLLM's rank: 1 + strictly better tokens
        top_values, top_ids = logprobs.topk(top_k, dim=-1) if top_k else (None, None)
        chosen_list, rank_list = chosen[:, 0].tolist(), ranks.tolist()
        top_id_rows = top_ids.tolist() if top_ids is not None else [[]] * len(rank_list)
        top_value_rows = top_values.tolist() if top_values is not None else [[]] * len(rank_list)
        for j, token_id in enumerate(targets[start : start + SLICE_ROWS]):
            top = tuple(zip(top_id_rows[j], top_value_rows[j], strict=True))
            results.append(TokenLogprobs(token_id, chosen_list[j], rank_list[j], top))
    return results
