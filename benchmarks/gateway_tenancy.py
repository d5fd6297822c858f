"""What tenants (issue 23) add to the gateway's request path, in process, on this CPU.

Three costs, each timed against its baseline in the same round, the two alternating, with the
median over rounds reported:
1. per request: Tenancy.identify + admit + settle (key digest lookup, a tenant with RPM, TPM
   and a daily budget; the usage observer made) vs the same for an anonymous caller (no key);
2. per stream: 16 chunks + the usage chunk as llm-server sends them with include_usage,
   through StreamUsage (usage read, the chunk and the `"usage":null`s taken out) vs relayed
   untouched;
3. per JSON answer (~1 KB): BodyUsage (kept, parsed at the end) vs relayed untouched.
Writes docs/benchmarks/gateway_tenancy.{json,md}.

    python benchmarks/gateway_tenancy.py [--rounds 15] [--n 4000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common  # noqa: E402
from llm_gateway.directory import ModelTarget, Replica  # noqa: E402
from llm_gateway.metrics import GatewayMetrics  # noqa: E402
from llm_gateway.tenancy import Tenancy, Ticket  # noqa: E402
from llm_gateway.tenants import KeySecret, Tenant, TenantTable, key_digest  # noqa: E402
from llm_gateway.usage import BodyUsage, StreamUsage  # noqa: E402

KEY = "sk-bench-0123456789abcdef"
TARGET = ModelTarget(
    "chat", "ns", "chat", (Replica("pod", "http://127.0.0.1:1", True, False),), 0.5
)
BODY = json.dumps(
    {"model": "chat", "messages": [{"role": "system", "content": "You are helpful. " * 40},
                                   {"role": "user", "content": "What is the time?"}]}
).encode()  # fmt: skip
USAGE = {"prompt_tokens": 180, "completion_tokens": 16, "total_tokens": 196}


def sse(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


CHUNKS = [
    sse({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "chat",
         "choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": None}],
         "usage": None})
    for _ in range(16)
] + [sse({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "chat",
          "choices": [], "usage": USAGE}), b"data: [DONE]\n\n"]  # fmt: skip
ANSWER = json.dumps(
    {"id": "c", "object": "chat.completion", "created": 1, "model": "chat",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "x " * 400},
                  "finish_reason": "stop"}], "usage": USAGE}
).encode()  # fmt: skip


def tenancy() -> Tenancy:
    tenant = Tenant("ns", "web", frozenset(), 10**9, 10**12, 10.0**9, "day")
    table = TenantTable([tenant], [KeySecret("ns", "web-key", "web", key_digest(KEY))])
    return Tenancy(table, GatewayMetrics(), require_key=False, replicas=1)


def request_path(gateway: Tenancy, authorization: str | None) -> Callable[[], None]:
    def one() -> None:
        tenant = gateway.identify(authorization)
        ticket = gateway.admit(tenant, TARGET, BODY, stream=False)  # type: ignore[arg-type]
        assert isinstance(ticket, Ticket)
        ticket.observer.feed(ANSWER)
        ticket.observer.finish()
        gateway.settle(ticket, 200)

    return one


def stream_observed() -> None:
    observer = StreamUsage(client_asked=False)
    for chunk in CHUNKS:
        observer.feed(chunk)
    observer.finish()


def stream_untouched() -> None:
    out = [chunk for chunk in CHUNKS if chunk]
    assert out


def body_observed() -> None:
    observer = BodyUsage()
    observer.feed(ANSWER[:512])
    observer.feed(ANSWER[512:])
    observer.finish()


def body_untouched() -> None:
    out = [ANSWER[:512], ANSWER[512:]]
    assert out


def per_call_us(fn: Callable[[], None], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def compare(name: str, measured: Callable[[], None], baseline: Callable[[], None], rounds: int,
            n: int) -> dict[str, object]:  # fmt: skip
    pairs: list[tuple[float, float]] = []
    for i in range(rounds):
        if i % 2:
            b = per_call_us(baseline, n)
            m = per_call_us(measured, n)
        else:
            m = per_call_us(measured, n)
            b = per_call_us(baseline, n)
        pairs.append((m, b))
    m_med = statistics.median(m for m, _ in pairs)
    b_med = statistics.median(b for _, b in pairs)
    added = statistics.median(m - b for m, b in pairs)
    return {"case": name, "measured_us_p50": round(m_med, 2), "baseline_us_p50": round(b_med, 2),
            "added_us_p50": round(added, 2), "ratio": round(m_med / b_med, 2) if b_med else None,
            "rounds": rounds, "calls_per_round": n}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    keyed, anonymous = tenancy(), tenancy()
    results = [
        compare("request: keyed tenant with RPM+TPM+budget vs anonymous",
                request_path(keyed, f"Bearer {KEY}"), request_path(anonymous, None),
                args.rounds, args.n),
        compare("stream of 16 chunks: usage read and taken out vs untouched",
                stream_observed, stream_untouched, args.rounds, args.n),
        compare("JSON answer ~1 KB: usage read vs untouched", body_observed, body_untouched,
                args.rounds, args.n),
    ]  # fmt: skip
    report = {
        "benchmark": "gateway_tenancy",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": bench_common.machine(aiohttp=version("aiohttp")),
        "load_average": os.getloadavg(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway_tenancy.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Gateway tenancy: what tenants add per request (in process)",
        "",
        f"{report['date']}, {report['machine']['cpu']} ({report['machine']['cores']} cores), "
        f"Python {report['machine']['python']}, load average "
        f"{' / '.join(f'{x:.1f}' for x in report['load_average'])}. "
        "`python benchmarks/gateway_tenancy.py`; measured and baseline alternate within each "
        "round; medians over rounds.",
        "",
        "| case | measured µs | baseline µs | added µs (median of per-round differences) | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['case']} | {r['measured_us_p50']} | {r['baseline_us_p50']} | "
                     f"{r['added_us_p50']} | {r['ratio']} |")  # fmt: skip
    (args.out / "gateway_tenancy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
