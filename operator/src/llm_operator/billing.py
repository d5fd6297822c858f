"""`llmops bill`: a month's chargeback per tenant from llm-gateway's Prometheus counters.

Pure: the month's window, the PromQL, turning query results into bill lines, and the table.
Only `query_prometheus` does I/O (one instant query over HTTP, stdlib only).

Each gateway replica counts its own share (`llm_gateway_tenant_*_total`), so the bill sums
`increase()` over replicas and restarts. `increase()` does not see what a series counted
before its first scrape (docs/traffic.md, "Bills").
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_operator.observability.promql import TENANT_DOLLARS as DOLLARS
from llm_operator.observability.promql import TENANT_REQUESTS as REQUESTS
from llm_operator.observability.promql import TENANT_TOKENS as TOKENS

BY = "namespace, tenant, model"
ANONYMOUS = "(no key)"  # tenant "": requests without a known key, when keys are optional


class BillError(Exception):
    """Bad input or an unreachable / failing Prometheus: one line for the user."""


@dataclass(frozen=True)
class Window:
    """A UTC calendar month, evaluated at its end or now, whichever comes first."""

    month: str  # YYYY-MM
    start: datetime
    end: datetime  # the evaluation time

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    @property
    def complete(self) -> bool:
        return self.end == next_month(self.start)


def next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def month_window(month: str | None, now: datetime) -> Window:
    """`month` as YYYY-MM (None: the current month); a month that has not begun is an error."""
    if month is None:
        month = now.strftime("%Y-%m")
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise BillError(f"--month {month!r}: expected YYYY-MM, such as 2026-11")
    start = datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)
    if start >= now:
        raise BillError(f"--month {month}: has not begun yet")
    return Window(month, start, min(next_month(start), now))


def check_namespace(namespace: str | None) -> None:
    if namespace is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise BillError(f"--namespace {namespace!r}: not a Kubernetes namespace name")


def _selector(metric: str, namespace: str | None) -> str:
    return f'{metric}{{namespace="{namespace}"}}' if namespace else metric


def queries(window: Window, namespace: str | None) -> dict[str, str]:
    """Column -> PromQL, each summed by namespace, tenant and model (and kind for tokens)."""
    check_namespace(namespace)

    def increase(metric: str, by: str = BY) -> str:
        return f"sum by ({by}) (increase({_selector(metric, namespace)}[{window.seconds}s]))"

    return {
        "requests": increase(REQUESTS),
        "tokens": increase(TOKENS, f"{BY}, kind"),
        "dollars": increase(DOLLARS),
    }


@dataclass
class Line:
    namespace: str
    tenant: str
    model: str
    requests: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    dollars: float = 0.0


def bill_lines(results: dict[str, list[dict[str, Any]]]) -> list[Line]:
    """Prometheus vector results per column (as `queries` names them) -> one line per
    namespace, tenant and model, sorted."""
    lines: dict[tuple[str, str, str], Line] = {}
    for column, samples in results.items():
        for sample in samples:
            labels = sample["metric"]
            key = (labels.get("namespace", ""), labels.get("tenant", ""), labels.get("model", ""))
            line = lines.setdefault(key, Line(*key))
            value = float(sample["value"][1])
            if column == "tokens":
                kind = labels.get("kind")
                if kind == "prompt":
                    line.prompt_tokens += value
                elif kind == "completion":
                    line.completion_tokens += value
            else:
                setattr(line, column, getattr(line, column) + value)
    return [lines[key] for key in sorted(lines)]


def _row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    left, *right = zip(cells, widths, strict=True)
    return (left[0].ljust(left[1]) + "".join(c.rjust(w) for c, w in right)).rstrip()


def _cells(label: str, lines: list[Line]) -> tuple[str, ...]:
    return (
        label,
        f"{round(sum(x.requests for x in lines)):,}",
        f"{round(sum(x.prompt_tokens for x in lines)):,}",
        f"{round(sum(x.completion_tokens for x in lines)):,}",
        f"${sum(x.dollars for x in lines):,.2f}",
    )


def bill_table(window: Window, lines: list[Line]) -> str:
    """The bill: per tenant its models and a total, then the grand total."""
    until = "month end" if window.complete else window.end.strftime("%Y-%m-%d %H:%M UTC")
    title = f"Bill for {window.month} (UTC, {window.start:%Y-%m-%d} to {until})"
    if not lines:
        return f"{title}\nno tenant traffic recorded\n"
    header = ("tenant / model", "requests", "prompt tokens", "completion tokens", "dollars")
    tenants: dict[tuple[str, str], list[Line]] = {}
    for line in lines:
        tenants.setdefault((line.namespace, line.tenant), []).append(line)
    rows: list[tuple[str, ...]] = []
    for (namespace, tenant), own in tenants.items():
        rows.append(_cells(f"{namespace}/{tenant or ANONYMOUS}", own))
        rows += [_cells(f"  {line.model}", [line]) for line in own]
    total = _cells("total", lines)
    widths = tuple(
        max(len(r[i]) for r in [header, *rows, total]) + (0 if i == 0 else 2)
        for i in range(len(header))
    )
    rule = "-" * sum(widths)
    body = [_row(r, widths) for r in rows]
    return "\n".join([title, _row(header, widths), rule, *body, rule, _row(total, widths)]) + "\n"


def query_prometheus(url: str, expr: str, at: datetime, timeout_s: float = 30.0) -> list[Any]:
    """One instant query; its vector result. Any failure is a BillError (one line)."""
    params = urllib.parse.urlencode({"query": expr, "time": f"{at.timestamp():.3f}"})
    endpoint = f"{url.rstrip('/')}/api/v1/query?{params}"
    if not endpoint.startswith(("http://", "https://")):
        raise BillError(f"--prometheus {url!r}: expected an http:// or https:// URL")
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout_s) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise BillError(f"Prometheus at {url} answered {exc.code}: {_error_of(exc)}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BillError(f"Prometheus at {url} unreachable: {reason}") from None
    if body.get("status") != "success" or body["data"]["resultType"] != "vector":
        raise BillError(f"Prometheus at {url}: {body.get('error', 'unexpected answer')}")
    result: list[Any] = body["data"]["result"]
    return result


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc).get("error", exc.reason))
    except ValueError:
        return str(exc.reason)


def fetch_bill(url: str, window: Window, namespace: str | None) -> list[Line]:
    results = {
        column: query_prometheus(url, expr, window.end)
        for column, expr in queries(window, namespace).items()
    }
    return bill_lines(results)
