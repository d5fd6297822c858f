"""Token sampling: greedy, temperature, min-p, top-k, top-p, penalties, min_tokens,
per-request seeded generators, logprobs.

Each request owns a torch.Generator, so a seeded request draws the same random numbers whatever
else shares its batch (and across preemption): sampling is reproducible per request.
The order is vLLM's: min_tokens and penalties on the raw logits (greedy takes the argmax of
those), then temperature, min_p, top_k, top_p. Logprobs are those of the model's raw
distribution (before any of it), as vLLM reports by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm_server.layers.penalties import TokenHistory, apply_min_tokens, apply_penalties
from llm_server.sampling_params import SamplingParams

# Below this a temperature is greedy (vLLM's _SAMPLING_EPS): dividing by it overflows float32.
SAMPLING_EPS = 1e-5


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    logprob: float | None
    top_logprobs: tuple[tuple[int, float], ...]
    error: str | None = None  # this row could not be sampled; its request alone fails


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator],
    histories: list[TokenHistory] | None = None,
) -> list[SampledToken]:
    """logits: [batch, vocab] for the last position of each sampled sequence; histories (the
    sequences' tokens) are needed only when some row has penalties or min_tokens."""
    logits = logits.float()
    processed = logits
    if any(p.has_penalties or p.min_tokens for p in params):
        if histories is None:
            raise ValueError("penalties and min_tokens need the sequences' token histories")
        processed = apply_penalties(apply_min_tokens(logits.clone(), params, histories),
                                    params, histories)  # fmt: skip
    token_ids = processed.argmax(dim=-1)
    errors: dict[int, str] = {}
    random_rows = [i for i, p in enumerate(params) if p.temperature >= SAMPLING_EPS]
    if random_rows:
        rows = torch.tensor(random_rows, device=logits.device)
        probs = _filtered_probs(processed[rows], [params[i] for i in random_rows])
        # Checked before multinomial: on CUDA a NaN row is a device-side assert (fatal to all).
        valid = (torch.isfinite(probs).all(dim=-1) & (probs.sum(dim=-1) > 0)).tolist()
        for j, i in enumerate(random_rows):
            if not valid[j]:
                errors[i] = "sampling produced no valid probability distribution"
                continue
            try:
                drawn = torch.multinomial(probs[j], 1, generator=generators[i])
            except RuntimeError as exc:
                errors[i] = f"sampling failed: {exc}"
                continue
            token_ids[i] = drawn[0]
    chosen = token_ids.tolist()
    want_logprobs = [i for i, p in enumerate(params) if p.logprobs is not None]
    logprob_of: dict[int, tuple[float, tuple[tuple[int, float], ...]]] = {}
    if want_logprobs:
        rows = torch.tensor(want_logprobs, device=logits.device)
        logprobs = torch.log_softmax(logits[rows], dim=-1)
        max_k = max(params[i].logprobs or 0 for i in want_logprobs)
        top_values, top_ids = logprobs.topk(max_k, dim=-1) if max_k else (None, None)
        for j, i in enumerate(want_logprobs):
            k = params[i].logprobs or 0
            top: tuple[tuple[int, float], ...] = ()
            if k and top_values is not None and top_ids is not None:
                top = tuple(zip(top_ids[j, :k].tolist(), top_values[j, :k].tolist(), strict=True))
            logprob_of[i] = (float(logprobs[j, chosen[i]]), top)
    results = []
    for i, token_id in enumerate(chosen):
        logprob, top = logprob_of.get(i, (None, ()))
        results.append(SampledToken(token_id, logprob, top, errors.get(i)))
    return results


def _filtered_probs(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    device = logits.device
    temperatures = torch.tensor([p.temperature for p in params], device=device)
    logits = logits / temperatures[:, None]
    min_ps = torch.tensor([p.min_p for p in params], device=device)
    if bool((min_ps > 0).any()):
        # min_p keeps tokens at least min_p x as likely as the most likely one (after temperature).
        probs = logits.softmax(dim=-1)
        threshold = probs.max(dim=-1, keepdim=True).values * min_ps[:, None]
        logits = logits.masked_fill(probs < threshold, float("-inf"))
    vocab = logits.shape[-1]
    top_ks = torch.tensor(
        [p.top_k if 0 < p.top_k < vocab else vocab for p in params], device=device
    )
    if bool((top_ks < vocab).any()):
        sorted_desc = logits.sort(dim=-1, descending=True).values
        kth = sorted_desc.gather(1, (top_ks - 1)[:, None])
        logits = logits.masked_fill(logits < kth, float("-inf"))
    top_ps = torch.tensor([p.top_p for p in params], device=device)
    if bool((top_ps < 1.0).any()):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the mass strictly before it already reaches top_p (keeps >= 1).
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        drop_sorted = mass_before >= top_ps[:, None]
        drop_sorted[:, 0] = False  # a top_p that rounds to 0 in float32 still keeps the top token
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(dim=-1)
