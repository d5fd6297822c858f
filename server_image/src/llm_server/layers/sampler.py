"""Token sampling: greedy, temperature, min-p, top-k, top-p, penalties, min_tokens,
per-request seeded generators, logprobs — vectorized over the batch.

The order is vLLM's: min_tokens and penalties on the raw logits (greedy takes the argmax of
those), then temperature, min_p, top_k, top_p. Logprobs are those of the model's raw
distribution (before any of it), as vLLM reports by default.

Draws are exponential races, argmax(probs / q) with q ~ Exp(1), which is what
torch.multinomial(probs, 1) does. A request with a `seed` draws its noise row from its own
generator exactly as multinomial did, so it gets the same tokens as before, whatever else
shares its batch (and across preemption). Unseeded rows share one batched draw from the
generator of the first of them (seeded by the engine), so an engine seed still reproduces a
whole run.

Every decision is taken on the host from the requests' parameters, never from tensor values:
the only device-to-host transfer is the one that returns the tokens (and logprobs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llm_server.layers.host_lists import to_device
from llm_server.layers.penalties import TokenHistory, apply_min_tokens, apply_penalties
from llm_server.sampling_params import SamplingParams

# Below this a temperature is greedy (vLLM's _SAMPLING_EPS): dividing by it overflows float32.
SAMPLING_EPS = 1e-5
_INVALID = -1  # the token id of a row whose distribution cannot be sampled
_INVALID_ERROR = "sampling produced no valid probability distribution"


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
    histories: Sequence[TokenHistory] | None = None,
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
    random_rows = [i for i, p in enumerate(params) if p.temperature >= SAMPLING_EPS]
    if len(random_rows) == len(params):
        token_ids = _draw(processed, params, generators)
    else:
        token_ids = processed.argmax(dim=-1)
        if random_rows:
            rows = to_device(random_rows, torch.long, logits.device)
            drawn = _draw(processed.index_select(0, rows), [params[i] for i in random_rows],
                          [generators[i] for i in random_rows])  # fmt: skip
            token_ids = token_ids.index_copy(0, rows, drawn)
    logprob_rows = [i for i, p in enumerate(params) if p.logprobs is not None]
    top_k = max((params[i].logprobs or 0 for i in logprob_rows), default=0)
    host = _to_host(logits, token_ids, logprob_rows, top_k)
    results = []
    for i, token_id in enumerate(host.token_ids):
        logprob, top = host.logprobs.get(i, (None, ()))
        error = _INVALID_ERROR if token_id == _INVALID else None
        results.append(SampledToken(token_id, logprob, top[: params[i].logprobs or 0], error))
    return results


def _draw(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]
) -> torch.Tensor:
    """One token per row of temperature-sampled rows; _INVALID where no distribution is left."""
    probs = _filtered_probs(logits, params)
    noise = _exponential_noise(probs.shape, params, generators, probs.device)
    drawn = (probs / noise).argmax(dim=-1)
    # A NaN or all-zero row would draw garbage (on CUDA multinomial would assert): it fails.
    total = probs.sum(dim=-1)
    valid = torch.isfinite(total) & (total > 0)
    return torch.where(valid, drawn, torch.full_like(drawn, _INVALID))


def _exponential_noise(
    shape: torch.Size,
    params: list[SamplingParams],
    generators: list[torch.Generator],
    device: torch.device,
) -> torch.Tensor:
    """Exp(1) noise: a seeded row's from its own generator (exponential_, what multinomial
    draws); the unseeded rows' in one draw of -log(U), four times cheaper than exponential_
    on CPU, from the generator of the first of them."""
    unseeded = [i for i, p in enumerate(params) if p.seed is None]
    if len(unseeded) == len(params):
        return torch.rand(shape, generator=generators[0], device=device).log_().neg_()
    noise = torch.empty(shape, device=device)
    for i, p in enumerate(params):
        if p.seed is not None:
            noise[i].exponential_(generator=generators[i])
    if unseeded:
        rows = to_device(unseeded, torch.long, device)
        drawn = torch.rand(len(unseeded), shape[-1], generator=generators[unseeded[0]],
                           device=device).log_().neg_()  # fmt: skip
        noise.index_copy_(0, rows, drawn)
    return noise


def _filtered_probs(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    device, vocab = logits.device, logits.shape[-1]
    temperatures = to_device([p.temperature for p in params], torch.float32, device)
    logits = logits / temperatures[:, None]
    if any(p.min_p > 0 for p in params):
        # min_p keeps tokens at least min_p x as likely as the most likely one (after temperature).
        min_ps = to_device([p.min_p for p in params], torch.float32, device)
        probs = logits.softmax(dim=-1)
        threshold = probs.max(dim=-1, keepdim=True).values * min_ps[:, None]
        logits = logits.masked_fill(probs < threshold, float("-inf"))
    truncating = [i for i, p in enumerate(params) if 0 < p.top_k < vocab or p.top_p < 1.0]
    if not truncating:
        return logits.softmax(dim=-1)
    if len(truncating) == len(params):
        drop = _top_k_top_p_drop(logits, params)
    else:  # only the rows that truncate pay for the (partial) sort
        rows = to_device(truncating, torch.long, device)
        dropped = _top_k_top_p_drop(logits.index_select(0, rows), [params[i] for i in truncating])
        drop = torch.zeros_like(logits, dtype=torch.bool).index_copy_(0, rows, dropped)
    return logits.masked_fill(drop, float("-inf")).softmax(dim=-1)


def _top_k_top_p_drop(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """The tokens top_k and top_p remove, for rows that have at least one of them."""
    device, vocab = logits.device, logits.shape[-1]
    top_ks = [p.top_k if 0 < p.top_k < vocab else 0 for p in params]
    top_ps = [p.top_p if p.top_p < 1.0 else float("inf") for p in params]  # inf: keeps all
    # Candidates in descending order: the top max(k) when every top_p row also has a top_k
    # (a partial sort), else the whole sorted vocabulary.
    needs_all = any(p < float("inf") and not k for p, k in zip(top_ps, top_ks, strict=True))
    width = vocab if needs_all else max(top_ks)
    if width < vocab:
        candidates, order = logits.topk(width, dim=-1)
    else:
        candidates, order = logits.sort(dim=-1, descending=True)
    # top_k keeps every token at least as likely as the k-th (ties included), as before.
    kth_index = to_device([k - 1 if k else 0 for k in top_ks], torch.long, device)
    has_top_k = to_device([bool(k) for k in top_ks], torch.bool, device)
    kth = candidates.gather(1, kth_index[:, None])
    kth = torch.where(has_top_k[:, None], kth, torch.full_like(kth, float("-inf")))
    drop = logits < kth
    if any(p < float("inf") for p in top_ps):
        candidates = candidates.masked_fill(candidates < kth, float("-inf"))
        sorted_probs = candidates.softmax(dim=-1)
        # Drop a token when the mass strictly before it already reaches top_p (keeps >= 1).
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        top_p = to_device(top_ps, torch.float32, device)
        drop_sorted = mass_before >= top_p[:, None]
        drop_sorted[:, 0] = False  # a top_p that rounds to 0 in float32 still keeps the top token
        drop |= torch.zeros_like(drop).scatter_(1, order, drop_sorted)
    return drop


@dataclass(frozen=True)
class _HostResults:
    token_ids: list[int]
    logprobs: dict[int, tuple[float | None, tuple[tuple[int, float], ...]]]  # row -> chosen, top


def _to_host(
    logits: torch.Tensor, token_ids: torch.Tensor, logprob_rows: list[int], top_k: int
) -> _HostResults:
    """The step's one device-to-host transfer: token ids, and for the rows that asked, the
    chosen token's logprob and the top_k (id, logprob) pairs, packed into one float64 vector
    (exact for ids below 2**53 and for float32 logprobs)."""
    if not logprob_rows:
        return _HostResults(token_ids.tolist(), {})
    batch, n = token_ids.shape[0], len(logprob_rows)
    rows = to_device(logprob_rows, torch.long, logits.device)
    logprobs = torch.log_softmax(logits.index_select(0, rows), dim=-1)
    chosen = token_ids.index_select(0, rows).clamp(min=0)  # an _INVALID row reads token 0
    parts = [token_ids.double(), logprobs.gather(1, chosen[:, None]).double().flatten()]
    if top_k:
        top_values, top_ids = logprobs.topk(top_k, dim=-1)
        parts += [top_ids.double().flatten(), top_values.double().flatten()]
    flat = torch.cat(parts).tolist()
    ids = [int(t) for t in flat[:batch]]
    chosen_logprobs = flat[batch : batch + n]
    top_ids_flat = flat[batch + n : batch + n + n * top_k]
    top_values_flat = flat[batch + n + n * top_k :]
    by_row = {}
    for j, i in enumerate(logprob_rows):
        span = slice(j * top_k, (j + 1) * top_k)
        top = tuple(zip((int(t) for t in top_ids_flat[span]), top_values_flat[span], strict=True))
        by_row[i] = (chosen_logprobs[j], top)
    return _HostResults(ids, by_row)
