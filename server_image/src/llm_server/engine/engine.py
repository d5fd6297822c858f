"""The synchronous engine: `step()` is schedule -> execute -> update.

Not thread-safe: one thread owns an LLMEngine (AsyncEngine runs it on its own thread).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from collections.abc import Sequence as Seq

import torch

from llm_server.engine.config import EngineConfig
from llm_server.engine.errors import RequestTooLongError
from llm_server.engine.kv_cache import BlockManager
from llm_server.engine.kv_sizing import kv_blocks_from_memory
from llm_server.engine.model_runner import ModelRunner, RunnerOutput
from llm_server.engine.request import EngineStats, FinishReason, TokenEvent
from llm_server.engine.scheduler import Scheduler, SchedulerOutput
from llm_server.engine.sequence import Sequence
from llm_server.engine.step_threads import StepThreads
from llm_server.layers.sampler import SampledToken
from llm_server.models.loader import LoadedModel
from llm_server.sampling_params import SamplingParams

log = logging.getLogger(__name__)


class LLMEngine:
    def __init__(
        self,
        config: EngineConfig,
        loaded: LoadedModel,
        runner_factory: Callable[..., ModelRunner] = ModelRunner,
    ) -> None:
        self.config = config
        self.tokenizer = loaded.tokenizer
        self.eos_token_ids = frozenset(loaded.eos_token_ids)
        self.device = loaded.device
        self.quantization = loaded.quantization  # as the loader resolved it (flags + checkpoint)
        num_blocks = config.num_kv_blocks or kv_blocks_from_memory(config, loaded)
        self.max_model_len = self._max_model_len(loaded, num_blocks)
        self.block_manager = BlockManager(
            num_blocks, config.block_size, enable_prefix_caching=config.enable_prefix_caching
        )
        self.scheduler = Scheduler(config, self.block_manager)
        self.runner = runner_factory(
            loaded.model, num_blocks, config.block_size, loaded.device, loaded.dtype
        )
        self._sequences: dict[str, Sequence] = {}
        # Set by a server running this engine on CPU beside its event loop (AsyncEngine).
        self.step_threads: StepThreads | None = None
        self._seed_source = random.Random(config.seed)
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self._last_batch_size = 0
        self._last_batch_tokens = 0

    def watch_failures(self, on_failure: Callable[[BaseException], None]) -> None:
        """`on_failure` is called, from any thread, when the engine can no longer run steps."""
        self.runner.watch(on_failure)

    def close(self) -> None:
        """Stop what runs beside this process (tensor-parallel ranks); idempotent."""
        self.runner.close()

    def _max_model_len(self, loaded: LoadedModel, num_blocks: int) -> int:
        limit = loaded.max_model_len
        if self.config.max_model_len is not None:
            if self.config.max_model_len > limit:
                raise ValueError(f"max_model_len {self.config.max_model_len} > model's {limit}")
            limit = self.config.max_model_len
        caps = {"KV cache": num_blocks * self.config.block_size}
        if not self.config.chunked_prefill:
            caps["token budget"] = self.config.max_num_batched_tokens
        for reason, cap in caps.items():
            if cap < limit:
                log.warning("max_model_len %d capped to %d by the %s", limit, cap, reason)
                limit = cap
        return limit

    # ---- requests -------------------------------------------------------------------------

    def add_request(
        self, request_id: str, prompt_token_ids: Seq[int], params: SamplingParams
    ) -> None:
        """Queue a request; raises QueueFullError, RequestTooLongError or ValueError."""
        if request_id in self._sequences:
            raise ValueError(f"request {request_id!r} is already running")
        if not prompt_token_ids:
            raise ValueError("the prompt is empty")
        if len(prompt_token_ids) >= self.max_model_len:
            raise RequestTooLongError(
                f"prompt of {len(prompt_token_ids)} tokens leaves no room to generate "
                f"within max_model_len {self.max_model_len}"
            )
        seed = params.seed if params.seed is not None else self._seed_source.getrandbits(63)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        seq = Sequence(request_id, list(prompt_token_ids), params, generator)
        if params.min_tokens:
            eos = () if params.ignore_eos else tuple(sorted(self.eos_token_ids))
            seq.banned_before_min_tokens = tuple(dict.fromkeys(params.stop_token_ids + eos))
        self.scheduler.add(seq)
        self._sequences[request_id] = seq

    def abort_request(self, request_id: str) -> bool:
        """Free the request's blocks; False when it is unknown or already finished."""
        seq = self._sequences.pop(request_id, None)
        if seq is None:
            return False
        self.scheduler.finish(seq, "abort")
        return True

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    # ---- the step -------------------------------------------------------------------------

    def step(self) -> list[TokenEvent]:
        batch = self.scheduler.schedule()
        if batch.is_empty:
            return []
        if self.step_threads is not None:
            self.step_threads.before_step(batch.num_tokens)
        output = self.runner.execute(batch)
        return self._update(batch, output)

    def _update(self, batch: SchedulerOutput, output: RunnerOutput) -> list[TokenEvent]:
        self._last_batch_size = len(batch.decodes) + len(batch.prefills)
        self._last_batch_tokens = batch.num_tokens
        events = []
        for chunk in batch.chunks:
            seq = chunk.seq
            seq.num_computed_tokens += chunk.num_tokens
            seq.prompt_logprobs.extend(output.prompt_logprobs.get(seq.request_id, ()))
            sampled = output.sampled.get(seq.request_id)
            if sampled is not None and sampled.error is not None:
                events.append(self._fail_sequence(seq, sampled.error))
            elif sampled is not None:
                events.append(self._append_token(seq, sampled))
        return events

    def _fail_sequence(self, seq: Sequence, error: str) -> TokenEvent:
        """One request's failure ends that request alone; the batch goes on."""
        log.error("request %s failed: %s", seq.request_id, error)
        self.scheduler.finish(seq, "abort")
        self._sequences.pop(seq.request_id, None)
        return TokenEvent(
            request_id=seq.request_id,
            token_id=-1,
            logprob=None,
            top_logprobs=(),
            finish_reason="abort",
            num_prompt_tokens=seq.num_prompt_tokens,
            error=error,
        )

    def _append_token(self, seq: Sequence, sampled: SampledToken) -> TokenEvent:
        first = not seq.output_token_ids
        seq.output_token_ids.append(sampled.token_id)
        self._generation_tokens_total += 1
        if first:
            self._prompt_tokens_total += seq.num_prompt_tokens
        reason = self._finish_reason(seq, sampled.token_id)
        if reason is not None:
            self.scheduler.finish(seq, reason)
            self._sequences.pop(seq.request_id, None)
        queue_time = None
        if first and seq.first_scheduled_time is not None:
            queue_time = seq.first_scheduled_time - seq.arrival_time
        prompt_logprobs = None
        if first and seq.params.prompt_logprobs is not None:
            prompt_logprobs = tuple(seq.prompt_logprobs)
        return TokenEvent(
            request_id=seq.request_id,
            token_id=sampled.token_id,
            logprob=sampled.logprob,
            top_logprobs=sampled.top_logprobs,
            finish_reason=reason,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_cached_prompt_tokens=seq.num_cached_prompt_tokens,
            queue_time_s=queue_time,
            prompt_logprobs=prompt_logprobs,
        )

    def _finish_reason(self, seq: Sequence, token_id: int) -> FinishReason | None:
        params = seq.params
        if token_id in params.stop_token_ids:
            return "stop"
        if not params.ignore_eos and token_id in self.eos_token_ids:
            return "stop"
        if len(seq.output_token_ids) >= params.max_tokens or seq.num_tokens >= self.max_model_len:
            return "length"
        return None

    def reset_counters(self) -> None:
        """Zero the running totals (after warm-up, so metrics count only real traffic)."""
        self._prompt_tokens_total = self._generation_tokens_total = 0
        self.scheduler.num_preemptions_total = 0
        self.scheduler.prefix_cache_queries_total = self.scheduler.prefix_cache_hits_total = 0

    def stats(self) -> EngineStats:
        return EngineStats(
            num_waiting=len(self.scheduler.waiting),
            num_running=len(self.scheduler.running),
            kv_cache_usage=self.block_manager.usage,
            num_preemptions_total=self.scheduler.num_preemptions_total,
            last_batch_size=self._last_batch_size,
            last_batch_tokens=self._last_batch_tokens,
            prompt_tokens_total=self._prompt_tokens_total,
            generation_tokens_total=self._generation_tokens_total,
            prefix_cache_queries_total=self.scheduler.prefix_cache_queries_total,
            prefix_cache_hits_total=self.scheduler.prefix_cache_hits_total,
        )

    # ---- offline convenience (tests, benchmarks) ------------------------------------------

    def generate(
        self, prompts: dict[str, list[int]], params: SamplingParams | dict[str, SamplingParams]
    ) -> dict[str, list[TokenEvent]]:
        """Run the given requests to completion; events per request id, in order."""
        for request_id, prompt in prompts.items():
            p = params[request_id] if isinstance(params, dict) else params
            self.add_request(request_id, prompt, p)
        results: dict[str, list[TokenEvent]] = {rid: [] for rid in prompts}
        while self.has_unfinished():
            for event in self.step():
                results[event.request_id].append(event)
        return results
