"""All the choices of one HTTP request (n per prompt), run concurrently and merged in order
of arrival; submitted all-or-nothing so a full queue never leaves half a request running."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from starlette.requests import Request

from llm_server.api.errors import APIError, batch_never_fits, queue_full, unavailable
from llm_server.api.generation import ChoiceDelta, ChoiceRun, Engine, GeneratedToken, TextOptions
from llm_server.api.protocol import PromptTokensDetails, Usage
from llm_server.engine.errors import QueueFullError, RequestTooLongError
from llm_server.metrics import ServerMetrics
from llm_server.sampling_params import SamplingParams
from llm_server.token_logprobs import TokenLogprobs

# (prompt index, choice index within n) -> that choice's sampling parameters
ParamsForChoice = Callable[[int, int], SamplingParams]


@dataclass
class ChoiceResult:
    index: int
    text: str = ""
    tokens: list[GeneratedToken] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_logprobs: tuple[TokenLogprobs | None, ...] | None = None


class ChoiceGroup:
    def __init__(
        self,
        engine: Engine,
        metrics: ServerMetrics,
        *,
        request_id: str,
        prompts: Sequence[list[int]],
        n: int,
        params_for_choice: ParamsForChoice,
        text_options: TextOptions,
        retry_after_s: int,
        max_waiting: int,
    ) -> None:
        if len(prompts) * n > max_waiting:  # a 429 would have the client retry forever
            raise batch_never_fits(len(prompts) * n, max_waiting)
        self.prompt_lengths = [len(prompt) for prompt in prompts]
        self.runs: list[ChoiceRun] = []
        arrival = time.monotonic()
        try:
            for prompt_index, prompt in enumerate(prompts):
                for choice in range(n):
                    index = prompt_index * n + choice
                    self.runs.append(
                        ChoiceRun(
                            engine,
                            metrics,
                            request_id=f"{request_id}-{index}",
                            index=index,
                            prompt_token_ids=prompt,
                            params=params_for_choice(prompt_index, choice),
                            text_options=text_options,
                            arrival_time=arrival,
                        )
                    )
        except QueueFullError:
            self.abort()
            raise queue_full(retry_after_s) from None
        except RequestTooLongError as exc:  # normally caught earlier by resolve_max_tokens
            self.abort()
            raise APIError(400, str(exc), param="prompt", code="context_length_exceeded") from exc
        except RuntimeError as exc:  # the engine is stopping or its loop has failed
            self.abort()
            raise unavailable(str(exc), "engine_unavailable", retry_after_s) from exc
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        for run in self.runs:
            run.abort()

    @property
    def completion_tokens(self) -> int:
        return sum(run.num_generated for run in self.runs)

    @property
    def cached_prompt_tokens(self) -> int:
        """Counted once per prompt, like the prompt itself."""
        per_prompt = len(self.runs) // max(len(self.prompt_lengths), 1)
        return sum(run.num_cached_prompt_tokens for run in self.runs[::per_prompt])

    def usage(self) -> Usage:
        prompt_tokens = sum(self.prompt_lengths)
        cached = self.cached_prompt_tokens
        return Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=prompt_tokens + self.completion_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached else None,
        )

    async def deltas(self) -> AsyncIterator[ChoiceDelta]:
        """Every choice's deltas, interleaved as they arrive; each choice's stay in order."""
        if len(self.runs) == 1:
            async for delta in self.runs[0].deltas():
                yield delta
            return
        queue: asyncio.Queue[ChoiceDelta | BaseException | None] = asyncio.Queue()

        async def pump(run: ChoiceRun) -> None:
            try:
                async for delta in run.deltas():
                    queue.put_nowait(delta)
                queue.put_nowait(None)
            except Exception as exc:
                queue.put_nowait(exc)

        tasks = [asyncio.create_task(pump(run)) for run in self.runs]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.abort()

    async def collect(self, request: Request) -> list[ChoiceResult]:
        """Run to completion; abort everything if the client disconnects first."""
        results = [ChoiceResult(run.index) for run in self.runs]

        async def gather() -> None:
            async for delta in self.deltas():
                result = results[delta.index]
                result.text += delta.text
                result.tokens.extend(delta.tokens)
                result.finish_reason = delta.finish_reason or result.finish_reason
                result.prompt_logprobs = delta.prompt_logprobs or result.prompt_logprobs

        work = asyncio.create_task(gather())
        watcher = asyncio.create_task(_wait_for_disconnect(request))
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not work.done():
                work.cancel()
                self.abort()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if not work.cancelled():
            work.result()  # re-raises an engine failure
        return results


async def _wait_for_disconnect(request: Request) -> None:
    """The body is already read, so the next ASGI message can only be the disconnect."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
