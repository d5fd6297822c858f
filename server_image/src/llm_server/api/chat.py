"""POST /v1/chat/completions."""

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
from llm_server.api.prompts import chat_prompt, refuse_client_template, resolve_max_tokens
from llm_server.api.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    DeltaMessage,
)
from llm_server.api.respond import chunk_dict, respond
from llm_server.api.response_caching import cache_slot
from llm_server.api.sampling import reject_unsupported, sampling_params, text_options
from llm_server.api.state import ServerState


async def create_chat_completion(
    state: ServerState, body: ChatCompletionRequest, request: Request
) -> Response:
    model = state.resolve_model(body.model)
    reject_unsupported(body)
    template_kwargs = refuse_client_template(
        body.chat_template_kwargs, body.chat_template, state.config.trust_request_chat_template
    )
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    top_logprobs = (body.top_logprobs or 0) if body.logprobs else None
    engine, lease = state.admit()
    try:
        tokenizer = engine.tokenizer
        # Off the event loop: rendering and tokenizing are CPU-bound (/health must answer).
        prompt = await asyncio.to_thread(
            chat_prompt, tokenizer, body.messages, body.add_generation_prompt, template_kwargs,
            body.continue_final_message, max_chars=state.config.max_prompt_chars,
        )  # fmt: skip
        # Chat's default is "as much as fits", as in OpenAI and vLLM.
        max_tokens = resolve_max_tokens(
            len(prompt), body.output_limit(), None, state.max_model_len,
            state.config.max_prompt_tokens, "messages",
        )  # fmt: skip
        resolved = {"endpoint": "chat", "model": model, "prompts": [prompt],
                    "max_tokens": max_tokens}  # fmt: skip
        slot = cache_slot(
            state.response_cache, body, state.cache_identity, resolved,
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
            prompts=[prompt],
            n=body.n,
            params_for_choice=lambda _, choice: sampling_params(
                body, max_tokens, top_logprobs, choice, body.prompt_logprobs
            ),
            text_options=text_options(body),
            retry_after_s=state.config.retry_after_seconds,
            max_waiting=state.config.max_waiting,
        )
    except BaseException:
        lease.release()
        raise
    formatter = LogprobFormatter(tokenizer, body.skip_special_tokens)

    def build(results: list[ChoiceResult]) -> ChatCompletionResponse:
        choices = [
            ChatChoice(
                index=result.index,
                message=AssistantMessage(content=result.text),
                logprobs=formatter.chat(result.tokens) if body.logprobs else None,
                finish_reason=result.finish_reason,
            )
            for result in results
        ]
        scored = results[0].prompt_logprobs if results else None
        prompt_logprobs = None
        if body.prompt_logprobs is not None and scored is not None:
            prompt_logprobs = formatter.prompt_logprobs(scored, body.prompt_logprobs)
        return ChatCompletionResponse(
            id=response_id, model=model, choices=choices, usage=group.usage(),
            prompt_logprobs=prompt_logprobs,
        )  # fmt: skip

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        created = int(time.time())
        include_usage = body.include_usage()

        def chunk(choice: ChatChunkChoice) -> dict[str, Any]:
            payload = ChatCompletionChunk(
                id=response_id, created=created, model=model, choices=[choice]
            )
            data = chunk_dict(payload, include_usage)
            for choice_data in data["choices"]:  # OpenAI sends only the delta's set fields
                delta = choice_data["delta"]
                choice_data["delta"] = {k: v for k, v in delta.items() if v is not None}
            return data

        for run in group.runs:  # OpenAI opens each choice with the role and empty content
            yield chunk(
                ChatChunkChoice(index=run.index, delta=DeltaMessage(role="assistant", content=""))
            )
        async for delta in group.deltas():
            if not delta.text and delta.finish_reason is None and not body.logprobs:
                continue  # text held back (split character or possible stop string)
            yield chunk(
                ChatChunkChoice(
                    index=delta.index,
                    delta=DeltaMessage(content=delta.text or None),
                    logprobs=formatter.chat(delta.tokens) if body.logprobs else None,
                    finish_reason=delta.finish_reason,
                )
            )
        if include_usage:
            final = ChatCompletionChunk(
                id=response_id, created=created, model=model, choices=[], usage=group.usage()
            )
            yield final.model_dump()

    return await respond(
        request, group, lease, stream=body.stream, chunks=chunks, build=build, cache=slot
    )
