"""Prompts -> token ids, and the length rules every prompt must pass before the engine."""

from __future__ import annotations

from typing import Any

from llm_server.api.errors import APIError, invalid_param
from llm_server.api.protocol import ChatMessage

# Where a client-supplied template may come from (vLLM accepts both), as the 400 names them.
CLIENT_TEMPLATE_PARAMS = ("chat_template", "chat_template_kwargs.chat_template")


def completion_prompts(tokenizer: Any, prompt: str | list[Any], max_chars: int) -> list[list[int]]:
    """OpenAI accepts a string, a token list, or a batch of either. Blocking: run it off the
    event loop (a megabyte of text takes seconds to tokenize)."""
    texts = [prompt] if isinstance(prompt, str) else [p for p in prompt if isinstance(p, str)]
    check_prompt_chars(sum(len(text) for text in texts), max_chars, "prompt")
    if isinstance(prompt, str):
        return [_encode(tokenizer, prompt, add_special_tokens=True)]
    if all(isinstance(item, int) for item in prompt):
        return [_checked_ids(tokenizer, list(prompt))]
    return [
        _encode(tokenizer, item, add_special_tokens=True)
        if isinstance(item, str)
        else _checked_ids(tokenizer, list(item))
        for item in prompt
    ]


def echo_texts(tokenizer: Any, prompt: str | list[Any], token_ids: list[list[int]]) -> list[str]:
    """What `echo` repeats: a string prompt as sent, a token prompt decoded."""
    items = prompt if isinstance(prompt, list) and not isinstance(prompt[0], int) else [prompt]
    return [
        item if isinstance(item, str) else str(tokenizer.decode(ids, skip_special_tokens=True))
        for item, ids in zip(items, token_ids, strict=True)
    ]


def check_prompt_chars(num_chars: int, max_chars: int, param: str) -> None:
    """Before tokenizing: the cost of tokenizing (and of a rendered template) is bounded."""
    if num_chars > max_chars:
        raise APIError(
            413, f"{param}: the prompt has {num_chars} characters; this server accepts at most "
            f"{max_chars}.", param=param, code="prompt_too_large",
        )  # fmt: skip


def refuse_client_template(
    template_kwargs: dict[str, Any] | None, chat_template: str | None, trusted: bool
) -> dict[str, Any] | None:
    """A chat template is code (jinja loops can run for minutes): a 400 naming the field unless
    the operator trusts clients. Returns the kwargs the template gets, the template included."""
    kwargs = dict(template_kwargs or {})
    given = [name for name, value in zip(CLIENT_TEMPLATE_PARAMS,
                                         (chat_template, kwargs.get("chat_template")),
                                         strict=True) if value is not None]  # fmt: skip
    if given and not trusted:
        raise APIError(
            400, f"{given[0]}: client-supplied chat templates are not allowed on this server "
            "(the operator can allow them with --trust-request-chat-template)",
            param=given[0], code="chat_template_not_allowed",
        )  # fmt: skip
    if chat_template is not None:
        kwargs["chat_template"] = chat_template
    return kwargs or None


def chat_prompt(
    tokenizer: Any,
    messages: list[ChatMessage],
    add_generation_prompt: bool,
    template_kwargs: dict[str, Any] | None,
    continue_final_message: bool = False,
    *,
    max_chars: int,
) -> list[int]:
    """continue_final_message leaves the last message open (no end-of-turn), so the model
    continues it, as vLLM and transformers do. `template_kwargs` passed refuse_client_template
    first; transformers renders templates in jinja's immutable sandbox. Blocking: run it off
    the event loop."""
    conversation = [_template_message(index, message) for index, message in enumerate(messages)]
    check_prompt_chars(sum(len(str(m["content"])) for m in conversation), max_chars, "messages")
    if getattr(tokenizer, "chat_template", None) is None:
        raise APIError(400, "This model has no chat template; use /v1/completions.",
                       param="messages", code="no_chat_template")  # fmt: skip
    try:
        text = tokenizer.apply_chat_template(
            conversation,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **({"continue_final_message": True} if continue_final_message else {}),
            **(template_kwargs or {}),
        )
    except Exception as exc:  # jinja raises on conversations the template refuses
        raise invalid_param("messages", f"messages: the chat template failed: {exc}") from exc
    check_prompt_chars(len(str(text)), max_chars, "messages")  # a template can expand it
    # The template already wrote any BOS it wants.
    return _encode(tokenizer, str(text), add_special_tokens=False)


def resolve_max_tokens(
    prompt_len: int,
    requested: int | None,
    default: int | None,
    max_model_len: int,
    max_prompt_tokens: int | None,
    prompt_param: str,
) -> int:
    """The number of tokens to generate, or a 400 when the prompt or the request cannot fit."""
    if max_prompt_tokens is not None and prompt_len > max_prompt_tokens:
        raise _too_long(
            prompt_param, f"The prompt has {prompt_len} tokens; this server accepts at most "
            f"{max_prompt_tokens}.",
        )  # fmt: skip
    if prompt_len >= max_model_len:
        raise _too_long(
            prompt_param,
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt has {prompt_len} tokens, leaving no room for the completion.",
        )
    room = max_model_len - prompt_len
    wanted = requested if requested is not None else min(default or room, room)
    if wanted > room:
        raise _too_long(
            "max_tokens",
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_len + wanted} tokens ({prompt_len} in the prompt, {wanted} in "
            "the completion). Please reduce the prompt or max_tokens.",
        )
    return wanted


def _too_long(param: str, message: str) -> APIError:
    return APIError(400, message, param=param, code="context_length_exceeded")


def _template_message(index: int, message: ChatMessage) -> dict[str, Any]:
    content = message.content
    if isinstance(content, list):
        if any(part.type != "text" or part.text is None for part in content):
            raise invalid_param(
                f"messages[{index}].content", "Only text content parts are supported."
            )
        content = "\n".join(part.text or "" for part in content)
    extra = {key: value for key, value in (message.model_extra or {}).items()}
    return {**extra, "role": message.role, "content": content or ""}


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))


def _checked_ids(tokenizer: Any, token_ids: list[int]) -> list[int]:
    """Out-of-vocabulary ids would index past the embedding table inside the engine."""
    vocab_size = len(tokenizer)
    bad = next((token for token in token_ids if token >= vocab_size), None)
    if bad is not None:
        raise invalid_param("prompt", f"prompt: token id {bad} is outside the vocabulary")
    return token_ids
