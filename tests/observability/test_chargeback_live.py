"""Chargeback against a real Prometheus (issue 23): every query of the Tenants row and every
chargeback rule returns data, and `llmops bill` prints a month's exact totals.

The Tenants row: Prometheus scrapes a small exposition of llm-gateway's tenant counters (the
names and labels of the tenants contract, growing with time) and evaluates the chart's rules.
The bill: a month of daily samples of two gateway replicas (one restarted mid-month) is
backfilled with `promtool tsdb create-blocks-from openmetrics`; both ends of each series sit on
the month's edges, so `increase()` has nothing to extrapolate and the totals are exact.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from running_prometheus import running_prometheus
from running_server import free_port

from llm_operator.cli import main
from llm_operator.observability.chargeback import RECORDED, SERIES

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "charts" / "llm-operator" / "files" / "prometheus-rules.yaml"
FLEET = ROOT / "charts" / "llm-operator" / "files" / "dashboards" / "fleet-cost.json"
DEADLINE_S = 60
TENANT = 'namespace="team-a",tenant="support-bot",model="chat"'
# (series, growth per second): what a gateway replica exports once tenants send traffic.
LIVE_COUNTERS = [
    (f'llm_gateway_tenant_requests_total{{{TENANT},code="200"}}', 2.0),
    (f'llm_gateway_tenant_requests_total{{{TENANT},code="429"}}', 0.5),
    (f'llm_gateway_tenant_tokens_total{{{TENANT},kind="prompt"}}', 300.0),
    (f'llm_gateway_tenant_tokens_total{{{TENANT},kind="completion"}}', 60.0),
    (f"llm_gateway_tenant_dollars_total{{{TENANT}}}", 0.001),
    (f'llm_gateway_tenant_rejections_total{{{TENANT},limit="requests_per_minute"}}', 0.5),
    ('llm_gateway_unpriced_tokens_total{model="chat"}', 10.0),
    ('llm_gateway_queued_requests{model="chat"}', 0.2),  # a gauge, but any value will do
    (f'llm_gateway_queue_rejections_total{{{TENANT},reason="shed"}}', 0.5),
]


@contextlib.contextmanager
def growing_exposition() -> Iterator[str]:
    """An HTTP /metrics whose counters grow at their rates since start; yields host:port."""
    started = time.monotonic()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            elapsed = time.monotonic() - started
            body = "".join(f"{series} {rate * elapsed}\n" for series, rate in LIVE_COUNTERS)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tenants_row_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of the Fleet cost dashboard's Tenants row, as Grafana sends them
    for namespace team-a and every model."""
    panels = json.loads(FLEET.read_text())["panels"]
    (row,) = [p for p in panels if p["type"] == "row" and p["title"] == "Tenants"]
    below = [p for p in panels if p["gridPos"]["y"] > row["gridPos"]["y"] and p["type"] != "row"]
    return [
        (
            p["title"],
            t["expr"]
            .replace("$namespace", "team-a")
            .replace("$model", ".*")
            .replace("$__rate_interval", "1m"),
        )
        for p in below
        for t in p["targets"]
    ]


def _has_data(prometheus: str, expr: str) -> bool:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    assert response.status_code in (200, 503), f"{expr}: {response.text}"  # 400: bad PromQL
    result = response.json()["data"]["result"] if response.status_code == 200 else []
    return any(math.isfinite(float(r["value"][1])) and float(r["value"][1]) > 0 for r in result)


def wait_ready(prometheus: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{prometheus}/-/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail("Prometheus never ready")


def test_tenants_row_and_chargeback_rules_return_data(tmp_path: Path) -> None:
    checks = tenants_row_queries()
    assert {title for title, _ in checks} >= {"Tenant spend, last hour", "Rejections by limit"}
    read = " ".join(expr for _, expr in checks)
    assert all(series in read for series in SERIES), "the row reads every chargeback series"
    checks += [(f"rule {name}", f'{name}{{namespace="team-a"}}') for name in RECORDED]
    with growing_exposition() as target:
        job = {"job_name": "llm-gateway", "honor_labels": True,
               "static_configs": [{"targets": [target]}]}  # fmt: skip
        with running_prometheus([job], tmp_path, [RULES_FILE]) as prometheus:
            wait_ready(prometheus)
            pending = dict(checks)
            deadline = time.monotonic() + DEADLINE_S
            while pending and time.monotonic() < deadline:
                pending = {w: e for w, e in pending.items() if not _has_data(prometheus, e)}
                time.sleep(0.5)
    assert not pending, "no data for:\n" + "\n".join(f"{w}: {e}" for w, e in pending.items())


# --- llmops bill -------------------------------------------------------------------------

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 30  # in November; one sample a day keeps the backfill to a few dozen blocks


def _samples(series: str, start: datetime, values: list[float]) -> list[str]:
    return [
        f"{series} {value} {(start + timedelta(days=day)).timestamp():.0f}"
        for day, value in enumerate(values)
    ]


def _linear(total: float, days: int = DAYS) -> list[float]:
    return [total * day / days for day in range(days + 1)]


def month_of_counters() -> str:
    """OpenMetrics text: November 2026 daily (31 samples: both month edges) and an October
    tenant whose last sample is November's first instant (in October's bill only)."""
    bot = 'namespace="team-a",tenant="support-bot"'
    restarted = _linear(10.0, 14) + _linear(5.0, DAYS - 15)  # gw-1 restarts on day 15
    families = {
        "llm_gateway_tenant_dollars": [
            *_samples(f'llm_gateway_tenant_dollars_total{{{bot},model="chat",pod="gw-0"}}',
                      NOVEMBER, _linear(180.0)),
            *_samples(f'llm_gateway_tenant_dollars_total{{{bot},model="chat",pod="gw-1"}}',
                      NOVEMBER, restarted),
            *_samples(f'llm_gateway_tenant_dollars_total{{{bot},model="code",pod="gw-0"}}',
                      NOVEMBER, _linear(4.5)),
            *_samples('llm_gateway_tenant_dollars_total{namespace="team-b",model="chat",pod="gw-0"}',
                      NOVEMBER, _linear(1.0)),
            *_samples('llm_gateway_tenant_dollars_total{namespace="default",tenant="old",'
                      'model="chat",pod="gw-0"}', NOVEMBER - timedelta(days=12),
                      _linear(7.0, 12)),
        ],
        "llm_gateway_tenant_tokens": [
            *_samples(f'llm_gateway_tenant_tokens_total{{{bot},model="chat",kind="prompt",pod="gw-0"}}',
                      NOVEMBER, _linear(720_000)),
            *_samples(f'llm_gateway_tenant_tokens_total{{{bot},model="chat",kind="completion",'
                      'pod="gw-0"}', NOVEMBER, _linear(259_200)),
        ],
        "llm_gateway_tenant_requests": [
            *_samples(f'llm_gateway_tenant_requests_total{{{bot},model="chat",code="200",pod="gw-0"}}',
                      NOVEMBER, _linear(72_000)),
            *_samples(f'llm_gateway_tenant_requests_total{{{bot},model="chat",code="429",pod="gw-0"}}',
                      NOVEMBER, _linear(1_440)),
        ],
    }  # fmt: skip
    lines = []
    for family, samples in families.items():
        lines += [f"# TYPE {family} counter", *samples]
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def billed_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("bill")
    source = workdir / "november.om"
    source.write_text(month_of_counters())
    command = ["promtool", "tsdb", "create-blocks-from", "openmetrics"]
    backfill = subprocess.run(
        [*command, str(source), str(workdir / "data")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    # Retention is measured from the newest block: keep the whole backfilled month.
    with running_prometheus([], workdir, extra_args=["--storage.tsdb.retention.time=100y"]) as url:
        wait_ready(url)
        yield url


def _bill(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, list[str]]:
    assert main(["bill", *args]) == 0
    out = capsys.readouterr().out
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:] if line.strip()}


def test_bill_prints_a_months_exact_totals(
    billed_prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _bill(capsys, "--prometheus", billed_prometheus, "--month", "2026-11")
    # Both replicas, the restart counted: 180 + (10 + 5) on chat, 4.50 on code.
    assert rows["team-a/support-bot"] == ["73,440", "720,000", "259,200", "$199.50"]
    assert rows["chat"][-1] == "$1.00"  # the last chat row: team-b's
    assert rows["code"] == ["0", "0", "0", "$4.50"]
    assert rows["team-b/(no"] == ["key)", "0", "0", "0", "$1.00"]
    assert rows["total"] == ["73,440", "720,000", "259,200", "$200.50"]
    assert "default/old" not in rows  # October's tenant


def test_bill_of_another_month_and_one_namespace(
    billed_prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    october = _bill(capsys, "--prometheus", billed_prometheus, "--month", "2026-10")
    assert october["default/old"][-1] == "$7.00" and october["total"][-1] == "$7.00"
    team_b = _bill(capsys, "--prometheus", billed_prometheus, "--month", "2026-11",
                   "--namespace", "team-b")  # fmt: skip
    assert team_b["total"][-1] == "$1.00" and "team-a/support-bot" not in team_b


def test_bill_errors_are_one_line_and_exit_2(
    billed_prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (
        ["--prometheus", f"http://127.0.0.1:{free_port()}"],
        ["--prometheus", billed_prometheus, "--month", "2026-13"],
        ["--prometheus", billed_prometheus, "--namespace", 'x"} or vector(1) #'],
    ):
        assert main(["bill", *args]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1, captured.err
        assert captured.err.startswith("llmops bill: ")
