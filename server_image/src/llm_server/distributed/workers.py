"""The worker ranks as child processes of the server: spawned, watched, stopped.

A watcher thread polls them; the first one to exit while the server still needs it is a
failure reported to whoever watches (the engine fails, the server exits non-zero). Workers in
turn exit when rank 0 goes away: their next collective fails, and they watch their parent pid.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable

from llm_server.engine.config import EngineConfig

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 15.0


class WorkerExitedError(RuntimeError):
    """A tensor-parallel rank died; the model cannot run without its shard."""


class WorkerProcesses:
    def __init__(self, processes: list[subprocess.Popen[bytes]]) -> None:
        self.processes = processes  # index i is rank i + 1
        self.failure: WorkerExitedError | None = None
        self._listeners: list[Callable[[BaseException], None]] = []
        self._lock = threading.Lock()
        self._reported: set[int] = set()  # ranks whose unexpected exit was logged
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="tp-watcher", daemon=True)
        self._watcher.start()

    @classmethod
    def spawn(cls, config: EngineConfig, port: int) -> WorkerProcesses:
        """Ranks 1..N-1, each `python -m llm_server.distributed.worker` on this machine."""
        size = config.tensor_parallel_size
        encoded = json.dumps(dataclasses.asdict(config))
        processes = []
        for rank in range(1, size):
            command = [
                sys.executable, "-m", "llm_server.distributed.worker",
                "--rank", str(rank), "--world-size", str(size), "--port", str(port),
                "--parent-pid", str(os.getpid()), "--engine-config", encoded,
            ]  # fmt: skip
            processes.append(subprocess.Popen(command))  # logs go where the server's go
        log.info("tensor parallel: spawned ranks 1..%d (pids %s)", size - 1,
                 [p.pid for p in processes])  # fmt: skip
        return cls(processes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def watch(self, on_failure: Callable[[BaseException], None]) -> None:
        with self._lock:
            failure = self.failure
            if failure is None:
                self._listeners.append(on_failure)
        if failure is not None:
            on_failure(failure)

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            for rank, process in enumerate(self.processes, start=1):
                if process.poll() is None or self._stopping.is_set():
                    continue
                error = WorkerExitedError(self._report_exit(rank, process))
                with self._lock:
                    self.failure = error
                    listeners, self._listeners = self._listeners, []
                for listener in listeners:
                    listener(error)
                return

    def _report_exit(self, rank: int, process: subprocess.Popen[bytes]) -> str:
        message = f"tensor-parallel rank {rank} (pid {process.pid}) exited with status "
        message += str(process.returncode)
        if rank not in self._reported:
            self._reported.add(rank)
            log.error("%s; the model cannot run without its shard", message)
        return message

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Wait for the ranks to leave (they were told to), killing any that do not."""
        self._stopping.set()
        for rank, process in enumerate(self.processes, start=1):
            dead_already = process.poll() is not None
            try:
                process.wait(timeout_s if self.failure is None and not dead_already else 0.5)
            except subprocess.TimeoutExpired:
                log.warning("tensor-parallel rank %d did not stop; killing it", rank)
                process.kill()
                process.wait()
                continue
            if process.returncode != 0:
                self._report_exit(rank, process)

    def kill(self) -> None:
        self._stopping.set()
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
