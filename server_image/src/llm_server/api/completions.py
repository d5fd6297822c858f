"""POST /v1/completions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llm_server.api.auth import request_key_id
from llm_server.api.choice_group import ChoiceGroup, ChoiceResult
from llm_server.api.logprobs import LogprobFormatter
from llm_server.api.prompts import completion_prompts, echo_texts, resolve_max_tokens
from llm_server.api.protocol import (
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
)
from llm_server.api.respond import chunk_dict, respond
from llm_server.api.response_caching import cache_slot
from llm_server.api.sampling import reject_unsupported, sampling_params, text_options
from llm_server.api.state import ServerState

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions


async def create_completion(
    state: ServerState, body: CompletionRequest, request: Request
) -> Response:
    model = state.resolve_model(body.model)
    reject_unsupported(body)
    # echo + logprobs scores the prompt: the engine computes prompt logprobs for both uses.
    echo_logprobs = body.logprobs if body.echo else None
    wanted = [k for k in (echo_logprobs, body.prompt_logprobs) if k is not None]
    engine_prompt_logprobs = max(wanted) if wanted else None
    response_id = f"cmpl-{uuid.uuid4().hex}"
    engine, lease = state.admit()
    try:
        tokenizer = engine.tokenizer
        # Off the event loop: tokenizing megabytes is CPU-bound (/health must answer).
        prompts = await asyncio.to_thread(
            completion_prompts, tokenizer, body.prompt, state.config.max_prompt_chars
        )
        max_tokens = [
            resolve_max_tokens(
                len(prompt), body.max_tokens, DEFAULT_MAX_TOKENS, state.max_model_len,
                state.config.max_prompt_tokens, "prompt",
            )
            for prompt in prompts
        ]  # fmt: skip
        resolved = {"endpoint": "completions", "model": model, "prompts": prompts,
                    "max_tokens": max_tokens}  # fmt: skip
        slot = cache_slot(
            state.response_cache, body, state.cache_identity, resolved, keep_prompt=body.echo,
            api_key_id=request_key_id(request),
        )  # fmt: skip
        hit = slot.lookup() if slot is not None else None
        if hit is not None:
            lease.release()
            return hit
        group = ChoiceGroup(
            engine,
            state.metrics,
            request_id=response_id,
            prompts=prompts,
            n=body.n,
            params_for_choice=lambda prompt, choice: sampling_params(
                body, max_tokens[prompt], body.logprobs, choice, engine_prompt_logprobs
            ),
            text_options=text_options(body),
            retry_after_s=state.config.retry_after_seconds,
            max_waiting=state.config.max_waiting,
        )
    except BaseException:
        lease.release()
        raise
    formatter = LogprobFormatter(tokenizer, body.skip_special_tokens)
    echoes = echo_texts(tokenizer, body.prompt, prompts) if body.echo else [""] * len(prompts)

    def echo_for(index: int) -> str:
        return echoes[index // body.n]

    def echo_logprobs_for(index: int, result: ChoiceResult | None) -> CompletionLogprobs | None:
        """The prompt's tokens at the head of logprobs when echo is on (as OpenAI)."""
        if echo_logprobs is None:
            return None
        entries = result.prompt_logprobs if result is not None else None
        prompt = prompts[index // body.n]
        return formatter.echo(prompt, entries or [None] * len(prompt), echo_logprobs)

    def logprobs_for(result: ChoiceResult) -> Any:
        if body.logprobs is None:
            return None
        generated = formatter.completion(result.tokens, len(echo_for(result.index)))
        head = echo_logprobs_for(result.index, result)
        return generated if head is None else _joined(head, generated)

    def prompt_logprobs_for(result: ChoiceResult) -> Any:
        if body.prompt_logprobs is None or result.prompt_logprobs is None:
            return None
        return formatter.prompt_logprobs(result.prompt_logprobs, body.prompt_logprobs)

    def build(results: list[ChoiceResult]) -> CompletionResponse:
        choices = [
            CompletionChoice(
                index=result.index,
                text=echo_for(result.index) + result.text,
                logprobs=logprobs_for(result),
                finish_reason=result.finish_reason,
                prompt_logprobs=prompt_logprobs_for(result),
            )
            for result in results
        ]
        return CompletionResponse(id=response_id, model=model, choices=choices, usage=group.usage())

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        created = int(time.time())
        include_usage = body.include_usage()

        def chunk(choices: list[CompletionChoice]) -> dict[str, Any]:
            payload = CompletionChunk(id=response_id, created=created, model=model, choices=choices)
            return chunk_dict(payload, include_usage)

        if body.echo and echo_logprobs is None:
            for run in group.runs:
                yield chunk([CompletionChoice(index=run.index, text=echo_for(run.index))])
        async for delta in group.deltas():
            if delta.prompt_logprobs is not None and echo_logprobs is not None:
                # The prompt's logprobs arrive with the first token: echo it then.
                result = ChoiceResult(delta.index, prompt_logprobs=delta.prompt_logprobs)
                head = echo_logprobs_for(delta.index, result)
                yield chunk([CompletionChoice(index=delta.index, text=echo_for(delta.index),
                                              logprobs=head)])  # fmt: skip
            if not delta.text and delta.finish_reason is None and body.logprobs is None:
                continue  # text held back (split character or possible stop string)
            logprobs = None
            if body.logprobs is not None:
                logprobs = formatter.completion(delta.tokens, len(echo_for(delta.index)))
            choice = CompletionChoice(
                index=delta.index, text=delta.text, logprobs=logprobs,
                finish_reason=delta.finish_reason,
            )  # fmt: skip
            yield chunk([choice])
        if include_usage:
            final = CompletionChunk(
                id=response_id, created=created, model=model, choices=[], usage=group.usage()
            )
            yield final.model_dump()

    return await respond(
        request, group, lease, stream=body.stream, chunks=chunks, build=build, cache=slot
    )


def _joined(head: CompletionLogprobs, tail: CompletionLogprobs) -> CompletionLogprobs:
    return CompletionLogprobs(
        tokens=head.tokens + tail.tokens,
        token_logprobs=head.token_logprobs + tail.token_logprobs,
        top_logprobs=head.top_logprobs + tail.top_logprobs,
        text_offset=head.text_offset + tail.text_offset,
    )
