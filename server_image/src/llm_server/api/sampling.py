"""OpenAI sampling fields -> the engine's SamplingParams, refusing what we do not implement."""

from __future__ import annotations

from llm_server.api.errors import invalid_param
from llm_server.api.generation import TextOptions
from llm_server.api.protocol import ChatCompletionRequest, CompletionRequest, SamplingRequest
from llm_server.sampling_params import SamplingParams

# A temperature below this samples greedily, as in vLLM (_SAMPLING_EPS): 1e-300 is positive
# but rounds to 0 in float32, and dividing logits by it gives NaN probabilities.
GREEDY_BELOW_TEMPERATURE = 1e-5


def reject_unsupported(request: SamplingRequest) -> None:
    """A 400 naming the field beats silently returning output the client did not ask for."""
    for name in request.model_extra or {}:  # vLLM extras we lack (use_beam_search ...), typos
        raise invalid_param(name, f"{name}: not supported by this server")
    unsupported: dict[str, bool] = {"logit_bias": bool(request.logit_bias)}
    if isinstance(request, CompletionRequest):
        unsupported["best_of"] = request.best_of is not None and request.best_of != request.n
        unsupported["suffix"] = bool(request.suffix)
    if isinstance(request, ChatCompletionRequest):
        unsupported["tools"] = bool(request.tools)
        response_type = (request.response_format or {}).get("type", "text")
        unsupported["response_format"] = response_type != "text"
    for name, is_set in unsupported.items():
        if is_set:
            raise invalid_param(name, f"{name}: not supported by this server")


def sampling_params(
    request: SamplingRequest,
    max_tokens: int,
    logprobs: int | None,
    choice: int,
    prompt_logprobs: int | None = None,
) -> SamplingParams:
    """Choice `choice` of n gets seed + choice, so n > 1 with a seed is reproducible and varied."""
    if request.min_tokens > max_tokens:
        raise invalid_param(
            "min_tokens", f"min_tokens: {request.min_tokens} is more than max_tokens {max_tokens}"
        )
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=0.0 if request.temperature < GREEDY_BELOW_TEMPERATURE else request.temperature,
        top_p=request.top_p,
        top_k=max(request.top_k, 0),
        seed=None if request.seed is None else request.seed + choice,
        stop_token_ids=tuple(request.stop_token_ids or ()),
        ignore_eos=request.ignore_eos,
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        repetition_penalty=request.repetition_penalty,
        frequency_penalty=request.frequency_penalty,
        presence_penalty=request.presence_penalty,
        min_p=request.min_p,
        min_tokens=request.min_tokens,
    )


def text_options(request: SamplingRequest) -> TextOptions:
    return TextOptions(
        stop_strings=request.stop_strings(),
        include_stop_str_in_output=request.include_stop_str_in_output,
        skip_special_tokens=request.skip_special_tokens,
    )
