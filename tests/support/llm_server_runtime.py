"""A PodRuntime (fake_kubelet) that runs a real `llm-server` process per pod, on the pod's
loopback IP and its container port named http, with the command line the operator rendered.

What differs from a real node, and why: `--model` becomes the tiny random-weight model (no
weights can be downloaded here) unless `model` says otherwise, `--host` is the pod's IP, and
the device is the CPU. Everything else (batching, quantization, context length, served name)
is what the operator wrote into the pod, so a wrong argument fails here as it would in a pod.
A pod turns Ready when its server answers /ready, as the rendered readiness probe asks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from fake_kubelet import pod_port

SERVER_SRC = Path(__file__).resolve().parents[2] / "server_image" / "src"
REPLACED = {"--model": 1, "--host": 1, "--device": 1}  # flag -> how many values follow


def server_command(
    pod: Mapping[str, Any], ip: str, model: str, extra_args: Sequence[str] = ()
) -> list[str]:
    """The pod's llm-server command line, with the model, host and device of this machine."""
    container = pod["spec"]["containers"][0]
    args = [*container.get("command", [])[1:], *container.get("args", [])]
    kept: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
        elif arg in REPLACED:
            skip = REPLACED[arg]
        elif arg.split("=", 1)[0] not in REPLACED:
            kept.append(arg)
    return [
        sys.executable, "-m", "llm_server", *kept, "--model", model,
        "--host", ip, "--port", str(pod_port(pod)), "--device", "cpu", *extra_args,
    ]  # fmt: skip


def termination(pod: Mapping[str, Any]) -> tuple[float, float]:
    """(preStop sleep, terminationGracePeriodSeconds) of the pod, in seconds."""
    spec = pod["spec"]
    pre_stop = (spec["containers"][0].get("lifecycle") or {}).get("preStop") or {}
    command = (pre_stop.get("exec") or {}).get("command") or []
    seconds = float(command[1]) if command[:1] == ["sleep"] and len(command) == 2 else 0.0
    seconds = float((pre_stop.get("sleep") or {}).get("seconds", seconds))
    return seconds, float(spec.get("terminationGracePeriodSeconds", 30))


def _terminate(process: subprocess.Popen[bytes], pre_stop: float, grace: float) -> None:
    try:
        process.wait(pre_stop)
        return  # it exited by itself
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(max(grace - pre_stop, 1.0))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class LlmServerRuntime:
    """One `llm-server` per started pod; `limit` pods at most get a process. The others stay
    starting, never Ready (a replica that bills while it loads, without a process's cost),
    or with `others_ready` turn Ready with nothing listening (a server that never answers)."""

    def __init__(
        self,
        log_dir: Path,
        model: str = "tiny-random",
        extra_args: Sequence[str] = (),
        limit: int | None = None,
        others_ready: bool = False,
    ) -> None:
        self.log_dir, self.model, self.extra_args, self.limit = log_dir, model, extra_args, limit
        self.others_ready = others_ready
        self.stopping: list[subprocess.Popen[bytes]] = []
        self.processes: dict[str, subprocess.Popen[bytes]] = {}  # pod uid -> process
        self.addresses: dict[str, str] = {}  # pod name -> http://ip:port
        self.started = 0
        self._lock = threading.Lock()

    def start(self, pod: Mapping[str, Any], ip: str) -> None:
        with self._lock:
            if self.limit is not None and self.started >= self.limit:
                return
            self.started += 1
        name = pod["metadata"]["name"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVER_SRC), env.get("PYTHONPATH")]))
        log = (self.log_dir / f"{name}.log").open("wb")
        command = server_command(pod, ip, self.model, self.extra_args)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.processes[pod["metadata"]["uid"]] = process
        self.addresses[name] = f"http://{ip}:{pod_port(pod)}"

    def ready(self, pod: Mapping[str, Any], ip: str) -> bool:
        process = self.processes.get(pod["metadata"]["uid"])
        if process is None:
            return self.others_ready  # beyond `limit`: never started
        if process.poll() is not None:
            return False  # exited: a crashed container is not Ready
        with contextlib.suppress(httpx.HTTPError):
            url = f"http://{ip}:{pod_port(pod)}/ready"
            return httpx.get(url, timeout=1).status_code == 200
        return False

    def stop(self, pod: Mapping[str, Any]) -> None:
        process = self.processes.pop(pod["metadata"]["uid"], None)
        self.addresses.pop(pod["metadata"]["name"], None)
        if process is None or process.poll() is not None:
            return
        # As a kubelet does, in the background (its watch must not stall): the preStop sleep
        # (the pod leaves the Service's endpoints meanwhile), SIGTERM (the server drains what
        # it accepted), SIGKILL when terminationGracePeriodSeconds is over.
        self.stopping.append(process)
        pre_stop, grace = termination(pod)
        threading.Thread(target=_terminate, args=(process, pre_stop, grace), daemon=True).start()

    def log(self, pod_name: str) -> str:
        path = self.log_dir / f"{pod_name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for process in [*self.processes.values(), *self.stopping]:
            if process.poll() is None:
                process.kill()
                process.wait(5)
        self.processes.clear()
