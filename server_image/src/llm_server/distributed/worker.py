"""A tensor-parallel worker rank: `python -m llm_server.distributed.worker` (spawned by rank 0).

Loads its shard, allocates its share of the KV cache, then runs the forward pass of every
step rank 0 sends until told to stop. Any error exits non-zero, which rank 0 notices.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

import torch

from llm_server.distributed.channel import StepChannel
from llm_server.distributed.launcher import load_rank
from llm_server.engine.config import EngineConfig
from llm_server.engine.model_runner import ModelRunner
from llm_server.models.loader import resolve_device
from llm_server.parallel_state import destroy_tensor_parallel, init_tensor_parallel

log = logging.getLogger("llm_server.worker")

PARENT_POLL_S = 0.5


def _exit_with_parent(parent_pid: int) -> None:
    """Backstop for a rank 0 that is gone but whose sockets have not told us so."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(PARENT_POLL_S)
        log.error("rank 0 (pid %d) is gone; exiting", parent_pid)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_worker(rank: int, world_size: int, port: int, config: EngineConfig) -> None:
    device = resolve_device(config.device)
    tp = init_tensor_parallel(rank, world_size, port, device)
    loaded, num_blocks = load_rank(config, tp, device)
    runner = ModelRunner(loaded.model, num_blocks, config.block_size, loaded.device, loaded.dtype)
    channel = StepChannel(tp)
    log.info("rank %d/%d ready: %d KV blocks", rank, world_size, num_blocks)
    with torch.inference_mode():
        while (inputs := channel.recv()) is not None:
            runner.forward(inputs)
    log.info("rank %d stopping", rank)
    destroy_tensor_parallel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm_server.distributed.worker")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--engine-config", required=True, help="EngineConfig as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level="INFO", format=f"%(asctime)s %(levelname)s rank{args.rank} %(name)s: %(message)s"
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: rank 0 drains
    _exit_with_parent(args.parent_pid)
    try:
        config = EngineConfig(**json.loads(args.engine_config))
        run_worker(args.rank, args.world_size, args.port, config)
    except Exception:
        log.exception("tensor-parallel rank %d failed", args.rank)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
