"""The peer benchmark's pure helpers (benchmarks/peers/): the seeded workload, the load summary,
the medians and goals of the report, and py-spy's collapsed stacks. No server, no llama.cpp."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from peers.load import RequestRecord, request_body, stream_one, summarize
from peers.profile import frame_name, top_functions
from peers.report import goals, medians
from peers.workload import WORDS, make_requests


def test_workload_is_seeded_and_within_bounds() -> None:
    first = make_requests(50, (128, 1024), (64, 256), seed=3)
    assert first == make_requests(50, (128, 1024), (64, 256), seed=3)
    assert first != make_requests(50, (128, 1024), (64, 256), seed=4)
    for request in first:
        assert 128 <= request.prompt_tokens <= 1024
        assert 64 <= request.max_tokens <= 256
        words = request.prompt.split(" ")
        # "The" and one single-token word per further token.
        assert words[0] == "The" and len(words) == request.prompt_tokens
        assert set(words[1:]) <= set(WORDS)
    assert len({r.prompt_tokens for r in first}) > 10  # lengths spread over the range


def test_workload_refuses_empty_ranges() -> None:
    with pytest.raises(ValueError, match="prompt lengths"):
        make_requests(1, (10, 5), (1, 1), seed=0)
    with pytest.raises(ValueError, match="output lengths"):
        make_requests(1, (1, 1), (0, 4), seed=0)


def test_request_body_holds_only_fields_both_servers_accept() -> None:
    body = request_body("m", make_requests(1, (8, 8), (4, 4), seed=0)[0])
    assert set(body) == {
        "model", "prompt", "max_tokens", "temperature", "ignore_eos", "stream", "stream_options"
    }  # fmt: skip
    assert body["ignore_eos"] is True and body["temperature"] == 0.0


def test_summary_counts_server_tokens_over_first_send_to_last_chunk() -> None:
    records = [
        RequestRecord(sent=0.0, chunk_times=[1.0, 1.5, 2.0], prompt_tokens=10,
                      completion_tokens=3),
        # Two tokens in the last chunk: throughput trusts usage, TPOT spreads the time over both.
        RequestRecord(sent=0.5, chunk_times=[2.5, 4.0], prompt_tokens=20, completion_tokens=4),
        RequestRecord(sent=0.0, error="HTTP 503: loading"),
    ]  # fmt: skip
    result = summarize(0.0, records)
    assert (result.requests, result.errors, result.output_tokens) == (3, 1, 7)
    assert result.wall_s == 4.0 and result.output_tokens_per_s == 7 / 4
    assert result.ttft_p50_s in (1.0, 2.0)
    assert result.tpot_p50_s == pytest.approx((0.5 + 0.5) / 2)
    assert result.prompt_tokens_mean == 15


def run(scenario: str, system: str, tok_s: float, tpot: float, rep: int = 0) -> dict:
    latencies = {"ttft_p50_s": 1.0, "tpot_p50_s": tpot, "itl_p50_s": tpot, "itl_p99_s": tpot}
    result = {"output_tokens_per_s": tok_s, **latencies, "errors": 0, "prompt_tokens_mean": 500}
    return {"scenario": scenario, "system": system, "rep": rep, "result": result}


def test_medians_and_goals_against_the_peer() -> None:
    runs = [
        run("batch 1", "ours fp32", 30, 0.030, 0), run("batch 1", "ours fp32", 10, 0.020, 1),
        run("batch 1", "ours fp32", 20, 0.040, 2), run("batch 1", "llama.cpp Q4_1", 50, 0.010),
        run("16 clients", "ours fp32", 100, 0.1), run("16 clients", "ours int8", 120, 0.1),
        run("16 clients", "llama.cpp Q4_1", 100, 0.05),
    ]  # fmt: skip
    table = medians(runs)
    assert table["batch 1"]["ours fp32"]["output_tokens_per_s"] == 20
    assert table["batch 1"]["ours fp32"]["tpot_p50_s"] == 0.030
    assert table["batch 1"]["ours fp32"]["reps"] == 3
    by_scenario = {g["scenario"]: g for g in goals(table, "llama.cpp Q4_1")}
    assert by_scenario["batch 1"]["ratio"] == pytest.approx(3.0)
    assert not by_scenario["batch 1"]["met"]
    # Our best row counts: int8's 120 against 100.
    assert by_scenario["16 clients"]["ours"] == "ours int8"
    assert by_scenario["16 clients"]["ratio"] == pytest.approx(1.2)
    assert by_scenario["16 clients"]["met"]


def test_profile_sums_self_and_inclusive_time_per_function() -> None:
    collapsed = "\n".join([
        'process 7:"llm-server --model m";run (engine.py:10);step (engine.py:20);'
        "forward (attention.py:5) 6",
        "run (engine.py:10);step (engine.py:21);sample (sampler.py:9) 3",
        "run (engine.py:11) 1",
        "garbage line",
    ])  # fmt: skip
    top = top_functions(collapsed)
    assert top["self"][0] == ("attention.py:forward", 0.6)
    assert dict(top["inclusive"])["engine.py:step"] == pytest.approx(0.9)
    assert dict(top["inclusive"])["engine.py:run"] == pytest.approx(1.0)
    assert not [name for name, _ in top["inclusive"] if name.startswith("process")]
    assert frame_name("forward (/a/b/llm_server/layers/attention.py:88)") == "attention.py:forward"


def test_a_dropped_connection_before_any_answer_is_sent_once_more() -> None:
    calls = []
    sse = (
        'data: {"choices": [{"text": " a"}]}\n\ndata: {"choices": [{"text": " b"}]}\n\n'
        'data: {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 2}}\n\n'
        "data: [DONE]\n\n"
    )

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})

    async def go() -> RequestRecord:
        transport = httpx.MockTransport(answer)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await stream_one(client, "m", make_requests(1, (8, 8), (2, 2), seed=0)[0])

    record = asyncio.run(go())
    assert len(calls) == 2
    assert (record.error, record.text, record.completion_tokens) == ("", " a b", 2)
    assert len(record.chunk_times) == 2
