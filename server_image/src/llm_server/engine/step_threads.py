"""torch's intra-op threads per engine step, when an HTTP server shares the CPU's cores.

A server's event loop (streaming, detokenizing) wakes after every step, beside the engine
thread. When torch's OpenMP team holds every core, each wake-up preempts a team thread and
the whole team waits for it at its next barrier, for an OS time slice. Measured on 2 cores
(llm-server with SmolLM2-135M int4, driven by benchmarks/peers' streaming client, fixed
thread counts): one stream decoded at 40 ms per token with 2 threads against 29 with 1,
while 16 streams ran 54 tokens/s with 2 threads against 32 with 1. So a small step (a few
decode tokens: bandwidth-bound, a second thread adds little) leaves one core to the event
loop, and a larger one takes them all; the outcome is in
docs/benchmarks/server_vs_peers_quantized.md.
"""

from __future__ import annotations

import torch

# Up to this many tokens a step counts as small (decode of a few sequences).
SMALL_STEP_TOKENS = 4


def threads_for(step_tokens: int, cores: int) -> int:
    """The intra-op threads for a step of `step_tokens` tokens, with `cores` available."""
    if cores < 2 or step_tokens > SMALL_STEP_TOKENS:
        return cores
    return cores - 1


class StepThreads:
    """Sets torch's thread count before each step; call from the thread that runs the steps
    (OpenMP's count is per calling thread)."""

    def __init__(self, cores: int) -> None:
        self.cores = cores
        self._current: int | None = None

    def before_step(self, step_tokens: int) -> None:
        wanted = threads_for(step_tokens, self.cores)
        if wanted != self._current:
            torch.set_num_threads(wanted)
            self._current = wanted
