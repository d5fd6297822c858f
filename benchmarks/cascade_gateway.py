"""The cascade through the real `llm-gateway` (part of benchmarks/cascade.py): a static route
`assistant` = cascade [cheap, large] with the picked gate, over the same two llm-servers, and
the TEST questions (a bounded number) sent to it as a client would (no logprobs asked).
Checks the exact arithmetic of cascade_frontier.py against the gateway itself: the answers'
text, the escalations and the dollars in the gateway's own route metrics."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cascade_frontier import Pair, gate_for
from cascade_questions import Question
from llm_gateway.gates import failing_gate

ROUTE = "assistant"


def static_models(
    urls: dict[str, str], price: dict[str, float], threshold: float | None
) -> dict[str, Any]:
    gate: dict[str, Any] = {"escalateOnLength": True, "escalateOnEmpty": True}
    if threshold is not None:
        gate["minMeanTokenLogprob"] = threshold
    return {
        "models": {
            d: {"replicas": [urls[d]], "dollarsPerMillionTokens": price[d]}
            for d in ("cheap", "large")
        },
        "routes": [{"model": ROUTE, "cascade": {"steps": ["cheap", "large"], "gate": gate}}],
    }


def simulated(
    pairs: list[Pair], price: dict[str, float], threshold: float | None
) -> dict[str, Any]:
    """What the gateway should do: per question the answer's text, and the totals."""
    gate = gate_for(threshold)
    texts, escalations, dollars, direct = [], 0, 0.0, 0.0
    for pair in pairs:
        dollars += pair.cheap.tokens * price["cheap"] / 1e6
        answered = pair.cheap
        if failing_gate(gate, pair.cheap.as_chat_answer()) is not None:
            escalations += 1
            answered = pair.large
            dollars += pair.large.tokens * price["large"] / 1e6
        texts.append(answered.text)
        direct += answered.tokens * price["large"] / 1e6
    return {
        "texts": texts,
        "escalations": escalations,
        "dollars": dollars,
        "direct_dollars": direct,
    }


def route_metrics(gateway_url: str) -> dict[str, float]:
    """Escalations and (direct) dollars of the route, from the gateway's /metrics."""
    totals = {"escalations": 0.0, "dollars": 0.0, "direct_dollars": 0.0, "attempts": 0.0}
    names = {
        "llm_gateway_cascade_escalations": "escalations",
        "llm_gateway_route_dollars": "dollars",
        "llm_gateway_route_direct_dollars": "direct_dollars",
        "llm_gateway_route_requests": "attempts",
    }
    text = httpx.get(gateway_url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        key = names.get(family.name)
        for sample in family.samples if key else ():
            if sample.name.endswith("_total") and sample.labels.get("route") == ROUTE:
                totals[key] += sample.value  # type: ignore[index]
    return totals


async def _ask_all(
    gateway_url: str, questions: list[Question], max_tokens: int, concurrency: int
) -> list[str]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300) as client:

        async def one(question: Question) -> str:
            body = {
                "model": ROUTE,
                "messages": question.messages(),
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            async with limit:
                response = await client.post(gateway_url + "/v1/chat/completions", json=body)
            response.raise_for_status()
            answer = response.json()
            assert (
                "logprobs" not in answer["choices"][0] or answer["choices"][0]["logprobs"] is None
            )
            return str(answer["choices"][0]["message"]["content"] or "")

        return list(await asyncio.gather(*(one(q) for q in questions)))


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llm-gateway exited {process.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("llm-gateway not ready in 120 s")


def run(
    urls: dict[str, str],
    price: dict[str, float],
    threshold: float | None,
    questions: list[Question],
    pairs: list[Pair],
    settings: dict[str, int],
    workdir: Path,
) -> dict[str, Any]:
    """`settings`: max_tokens, concurrency, port."""
    models = workdir / "static-models.yaml"
    models.write_text(yaml.safe_dump(static_models(urls, price, threshold)))
    url = f"http://127.0.0.1:{settings['port']}"
    command = [
        sys.executable, "-m", "llm_gateway", "--static-models", str(models),
        "--host", "127.0.0.1", "--port", str(settings["port"]), "--log-level", "warning",
    ]  # fmt: skip
    gateway = subprocess.Popen(
        command, stdout=(workdir / "gateway.log").open("wb"), stderr=subprocess.STDOUT
    )
    try:
        _wait_ready(url, gateway)
        started = time.monotonic()
        texts = asyncio.run(
            _ask_all(url, questions, settings["max_tokens"], settings["concurrency"])
        )
        seconds = time.monotonic() - started
        measured = route_metrics(url)
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    expected = simulated(pairs, price, threshold)
    return {
        "questions": len(questions),
        "threshold": threshold,
        "seconds": round(seconds, 1),
        "answers_equal_simulated": sum(
            a == b for a, b in zip(texts, expected["texts"], strict=True)
        ),
        "escalations": {"gateway": measured["escalations"], "simulated": expected["escalations"]},
        "attempts_gateway": measured["attempts"],
        "dollars": {"gateway": measured["dollars"], "simulated": expected["dollars"]},
        "direct_dollars": {
            "gateway": measured["direct_dollars"],
            "simulated": expected["direct_dollars"],
        },
    }


def markdown(check: dict[str, Any]) -> str:
    if not check:
        return "Not run."
    e, d, dd = check["escalations"], check["dollars"], check["direct_dollars"]
    threshold = "none" if check["threshold"] is None else f"{check['threshold']:.3f}"
    return "\n".join([
        f"The first {check['questions']} TEST questions sent to the real `llm-gateway` "
        f"(static route `{ROUTE}`: cascade [cheap, large], memory-bound prices, threshold "
        f"{threshold}) in {check['seconds']} s:", "",
        "| | gateway (its /metrics) | computed from the collected answers |", "|---|---:|---:|",
        f"| answers equal | {check['answers_equal_simulated']} of {check['questions']} | – |",
        f"| escalations | {e['gateway']:.0f} | {e['simulated']} |",
        f"| dollars (every attempt) | {d['gateway']:.8f} | {d['simulated']:.8f} |",
        f"| direct dollars (to large) | {dd['gateway']:.8f} | {dd['simulated']:.8f} |",
    ])  # fmt: skip
