"""A real `llm-gateway` process (static directory) and traffic that gives every Gateway panel
of the dashboard data: affinity and load picks, retries (a listed replica with nothing
listening), holds that time out (a model with no replica) and holds rejected over the bound."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import yaml
from running_server import free_port

ASLEEP = "asleep"  # a model the gateway knows with no replica: its requests are held
HOLD_TIMEOUT_S = 1


@contextlib.contextmanager
def running_gateway(replicas: dict[str, list[str]], workdir: Path) -> Iterator[str]:
    """`llm-gateway --static-models` on loopback; yields its base URL once /readyz is 200."""
    static = workdir / "static-models.yaml"
    static.write_text(yaml.safe_dump(replicas))
    port = free_port()
    command = [
        sys.executable, "-m", "llm_gateway", "--static-models", str(static),
        "--host", "127.0.0.1", "--port", str(port), "--max-held-per-model", "1",
        "--hold-timeout-seconds", str(HOLD_TIMEOUT_S), "--scrape-interval-seconds", "0.5",
    ]  # fmt: skip
    log = workdir / "llm-gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "llm-gateway never ready"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


class GatewayLoad:
    """Two clients of the served model through the gateway (shared-prefix prompts) and one
    that sends pairs of requests for the sleeping model: one held until it times out (503),
    the other over the bound of one held request (429)."""

    def __init__(self, gateway: str, model: str, prefix: str) -> None:
        self.client = openai.OpenAI(
            base_url=f"{gateway}/v1", api_key="none", max_retries=0, timeout=120
        )
        self.gateway, self.model, self.prefix = gateway, model, prefix
        self.stop = threading.Event()
        self.served: list[int] = []
        self.held: list[int] = []  # status codes of the sleeping model's requests
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._served, args=(i,)) for i in range(2)]
        self.threads.append(threading.Thread(target=self._asleep))

    def _served(self, i: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                answer = self.client.completions.create(
                    model=self.model, prompt=f"{self.prefix} gateway question {i}.{n}?",
                    max_tokens=8, temperature=0, extra_body={"ignore_eos": True},
                )  # fmt: skip
                assert answer.usage is not None and answer.usage.completion_tokens == 8
                self.served.append(i)
            except Exception as exc:  # reported by the test
                self.failures.append(repr(exc))

    def _asleep_request(self) -> None:
        body = {"model": ASLEEP, "prompt": "anyone?", "max_tokens": 1}
        try:
            response = httpx.post(f"{self.gateway}/v1/completions", json=body, timeout=30)
            self.held.append(response.status_code)
        except httpx.HTTPError as exc:
            self.failures.append(repr(exc))

    def _asleep(self) -> None:
        while not self.stop.is_set():
            first = threading.Thread(target=self._asleep_request)
            first.start()
            time.sleep(0.2)  # the first is held by now: the second is over the bound
            self._asleep_request()
            first.join()
            self.stop.wait(1)

    def __enter__(self) -> GatewayLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        self.client.close()
