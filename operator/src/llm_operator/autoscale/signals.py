"""What the signal collector observed for one LLMDeployment at one time.

One `PodSignals` per ready pod the collector tried to scrape (`vllm:num_requests_waiting`,
`vllm:num_requests_running`, the token counters, KV-cache usage). A pod whose scrape failed
(timeout, refused, garbled) keeps `scrape_ok=False` and its numbers are meaningless: its load
is unknown, which is not the same as idle. Pods that exist but are not ready yet (pulling the
image, loading weights) are only counted: they are capacity on its way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PodSignals:
    """One ready pod's scrape."""

    name: str
    scrape_ok: bool = True
    waiting: int = 0  # vllm:num_requests_waiting (queued, not yet scheduled)
    running: int = 0  # vllm:num_requests_running (being prefilled or decoded)
    prompt_tokens_total: float = 0.0  # vllm:prompt_tokens_total (counter)
    generation_tokens_total: float = 0.0  # vllm:generation_tokens_total (counter)
    kv_cache_usage: float = 0.0  # vllm:gpu_cache_usage_perc, 0..1
    # vllm:request_queue_time_seconds_sum (counter): seconds spent queued by the requests that
    # left the queue. Its rate is the queue length averaged over the interval, which sees the
    # bursts that come and go between two scrapes; None when the server does not export it.
    queue_seconds_total: float | None = None
    # vllm:e2e_request_latency_seconds_sum (counter): seconds in the server (queued + running)
    # of the requests that finished. Its rate minus the queue counter's is the number of
    # running requests averaged over the interval (Little's law again); None when not exported.
    latency_seconds_total: float | None = None

    @staticmethod
    def failed(name: str) -> PodSignals:
        """A pod that did not answer: its load is unknown."""
        return PodSignals(name=name, scrape_ok=False)


@dataclass(frozen=True)
class DeploymentSignals:
    """Everything the policy sees about one deployment at one time."""

    current_replicas: int  # the Deployment's spec.replicas now (ready + starting + unready)
    ready: tuple[PodSignals, ...] = ()
    starting: int = 0  # pods created but not ready yet: coming capacity
    loading: int = 0  # of those, the ones the scheduler placed (pulling, loading weights)

    @property
    def answered(self) -> tuple[PodSignals, ...]:
        return tuple(p for p in self.ready if p.scrape_ok)

    @property
    def unanswered(self) -> int:
        return sum(1 for p in self.ready if not p.scrape_ok)

    @property
    def waiting(self) -> int:
        return sum(p.waiting for p in self.answered)

    @property
    def running(self) -> int:
        return sum(p.running for p in self.answered)

    @property
    def generation_tokens_total(self) -> float:
        return sum(p.generation_tokens_total for p in self.answered)
