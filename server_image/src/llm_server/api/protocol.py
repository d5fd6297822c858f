"""OpenAI request and response bodies, with the ranges OpenAI (and vLLM) enforce.

Unknown fields are kept (extra="allow") so api/sampling.py can refuse them with a 400 naming
them: a vLLM extra we do not implement must not be silently ignored. Known fields we do not
implement (logit_bias, tools ...) are refused there too; `user` is ignored (it cannot change
the output).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_LOGPROBS = 20
MAX_N = 128
MAX_STOP_STRINGS = 16

# Logits are divided (positive) or multiplied (negative) by the repetition penalty in float32:
# 1e-300 rounds to 0 there and 1e300 to inf, and either gives NaN probabilities. vLLM only asks
# for > 0; these bounds lie far outside any useful setting and keep every logit finite.
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 1e-2, 1e2

# Seeds are 64-bit signed, as in vLLM; choice i of n draws with seed + i (< 2**64: still valid).
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1


def _no_lone_surrogates(text: str) -> str:
    """JSON's "\\udfff" escape decodes to a lone surrogate no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (not valid Unicode)") from None
    return text


Text = Annotated[str, AfterValidator(_no_lone_surrogates)]
NonEmptyStr = Annotated[Text, Field(min_length=1)]
# OpenAI rejects "5" for an integer and "yes" or 1 for a boolean; pydantic's lax mode would not.
StrictInt = Annotated[int, Field(strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """The sampling fields completions and chat share, plus vLLM's extras."""

    # Unknown fields are kept only to be refused by name: the documented schema admits none.
    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})

    model: str | None = None  # None: the first served name
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: StrictInt = Field(default=0, ge=-1)  # extra; 0 or -1 disables
    n: StrictInt = Field(default=1, ge=1, le=MAX_N)
    seed: StrictInt | None = Field(default=None, ge=MIN_SEED, le=MAX_SEED)
    stop: NonEmptyStr | list[NonEmptyStr] | None = Field(default=None)
    stop_token_ids: list[Annotated[int, Field(ge=0, strict=True)]] | None = None  # extra
    ignore_eos: StrictBool = False  # extra
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # vLLM's extras
    repetition_penalty: float = Field(
        default=1.0, ge=MIN_REPETITION_PENALTY, le=MAX_REPETITION_PENALTY
    )
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    min_tokens: StrictInt = Field(default=0, ge=0)
    include_stop_str_in_output: StrictBool = False
    skip_special_tokens: StrictBool = True
    prompt_logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_LOGPROBS)

    @model_validator(mode="after")
    def _check_shared(self) -> SamplingRequest:
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP_STRINGS:
            raise ValueError(f"stop: at most {MAX_STOP_STRINGS} stop strings")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed when stream is true")
        if self.prompt_logprobs is not None and self.stream:
            raise ValueError("prompt_logprobs: not available when stream is true (as in vLLM)")
        return self

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


PromptTokens = list[Annotated[int, Field(ge=0, strict=True)]]


class CompletionRequest(SamplingRequest):
    prompt: NonEmptyStr | list[NonEmptyStr] | PromptTokens | list[PromptTokens]
    logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    echo: StrictBool = False
    best_of: StrictInt | None = Field(default=None, ge=1, le=MAX_N)
    suffix: str | None = None

    @model_validator(mode="after")
    def _check_completion(self) -> CompletionRequest:
        if isinstance(self.prompt, list):
            if not self.prompt:
                raise ValueError("prompt: must not be empty")
            if any(isinstance(item, list) and not item for item in self.prompt):
                raise ValueError("prompt: token lists must not be empty")
        return self


class ContentPart(BaseModel):
    type: str
    text: Text | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id ... go to the template as-is

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None

    @model_validator(mode="after")
    def _check_extras(self) -> ChatMessage:
        for value in (self.model_extra or {}).values():  # name, tool_call_id ...
            if isinstance(value, str):
                _no_lone_surrogates(value)
        return self


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    add_generation_prompt: StrictBool = True  # extra, as in vLLM
    continue_final_message: StrictBool = False  # extra, as in vLLM: extend the last message
    chat_template_kwargs: dict[str, Any] | None = None  # extra, as in vLLM
    chat_template: Text | None = None  # extra, as in vLLM; needs --trust-request-chat-template

    @model_validator(mode="after")
    def _check_chat(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs: requires logprobs to be true")
        if self.continue_final_message and self.add_generation_prompt:
            raise ValueError(
                "continue_final_message: cannot be combined with add_generation_prompt "
                "(set add_generation_prompt to false)"
            )
        return self

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


# Responses -------------------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    text_offset: list[int] = []


class PromptLogprob(BaseModel):
    """vLLM's shape: per prompt position, token id (as a string key) -> this."""

    logprob: float
    rank: int | None = None
    decoded_token: str


PromptLogprobs = list[dict[str, PromptLogprob] | None]


def _is_none(value: Any) -> bool:
    return value is None


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    # vLLM's extra; absent unless asked for, so OpenAI's shape is unchanged
    prompt_logprobs: PromptLogprobs | None = Field(default=None, exclude_if=_is_none)


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = []


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    # vLLM's extra (a chat request has one prompt); absent unless asked for
    prompt_logprobs: PromptLogprobs | None = Field(default=None, exclude_if=_is_none)


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChunk(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llm-server"
    root: str
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
