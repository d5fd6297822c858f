"""llm-gateway's route counters, read from one gateway pod's /metrics page. Pure.

The metric names are the gateway's (route contract, llm_gateway/metrics.py). A request ends
with exactly one attempt whose outcome is `served` or `failed` (the others, `fallback` and
`escalated`, lead to another attempt), so those two count requests. Also: the EndpointSlices
of the gateway's Service -> the ready pods' /metrics URLs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ROUTE_REQUESTS = "llm_gateway_route_requests_total"
ESCALATIONS = "llm_gateway_cascade_escalations_total"
ROUTE_DOLLARS = "llm_gateway_route_dollars_total"
DIRECT_DOLLARS = "llm_gateway_route_direct_dollars_total"
FINAL_OUTCOMES = frozenset({"served", "failed"})

RouteKey = tuple[str, str]  # (namespace, route name)


@dataclass(frozen=True)
class RouteCounters:
    requests: float = 0.0
    escalations: float = 0.0
    dollars: float = 0.0
    direct_dollars: float = 0.0

    def plus(self, other: RouteCounters) -> RouteCounters:
        return RouteCounters(
            self.requests + other.requests,
            self.escalations + other.escalations,
            self.dollars + other.dollars,
            self.direct_dollars + other.direct_dollars,
        )

    def increase_since(self, before: RouteCounters) -> RouteCounters:
        """Counter increase from `before`, per counter; one that went down was reset (the
        gateway restarted), so all of its value is new."""

        def one(now: float, then: float) -> float:
            return now - then if now >= then else now

        return RouteCounters(
            one(self.requests, before.requests),
            one(self.escalations, before.escalations),
            one(self.dollars, before.dollars),
            one(self.direct_dollars, before.direct_dollars),
        )


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_sample(line: str) -> tuple[str, dict[str, str], float] | None:
    """(name, labels, value) of one exposition line; None for comments, blanks, bad lines."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    brace = line.find("{")
    labels: dict[str, str] = {}
    if brace == -1:
        name, _, rest = line.partition(" ")
    else:
        name, i = line[:brace], brace + 1
        while i < len(line) and line[i] != "}":
            eq = line.find("=", i)
            if eq == -1 or eq + 1 >= len(line) or line[eq + 1] != '"':
                return None
            key, j, chars = line[i:eq].strip().lstrip(","), eq + 2, []
            while j < len(line) and line[j] != '"':
                chars.append(line[j : j + 2] if line[j] == "\\" else line[j])
                j += 2 if line[j] == "\\" else 1
            labels[key.strip()] = _unescape("".join(chars))
            i = j + 1
            while i < len(line) and line[i] in ", ":
                i += 1
        rest = line[i + 1 :]
    try:
        value = float(rest.split()[0])
    except (IndexError, ValueError):
        return None
    return (name, labels, value) if not math.isnan(value) else None


def route_counters(page: str) -> dict[RouteKey, RouteCounters]:
    """Each route's counters on one gateway page (summed over targets, steps, gates)."""
    totals: dict[RouteKey, RouteCounters] = {}
    for line in page.splitlines():
        sample = parse_sample(line)
        if sample is None:
            continue
        name, labels, value = sample
        key = (labels.get("namespace", ""), labels.get("route", ""))
        if name == ROUTE_REQUESTS:
            add = RouteCounters(requests=value if labels.get("outcome") in FINAL_OUTCOMES else 0)
        elif name == ESCALATIONS:
            add = RouteCounters(escalations=value)
        elif name == ROUTE_DOLLARS:
            add = RouteCounters(dollars=value)
        elif name == DIRECT_DOLLARS:
            add = RouteCounters(direct_dollars=value)
        else:
            continue
        totals[key] = totals.get(key, RouteCounters()).plus(add)
    return totals


def gateway_pod_urls(
    slices: Iterable[Mapping[str, Any]], port_name: str = "http"
) -> dict[str, str]:
    """Pod name -> its /metrics URL, for the ready, non-terminating endpoints of the slices of
    the gateway's Service (the port named `port_name`, else the slice's only port)."""
    urls: dict[str, str] = {}
    for piece in slices:
        ports = piece.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == port_name), None)
        if port is None and len(ports) == 1:
            port = ports[0].get("port")
        if port is None:
            continue
        for endpoint in piece.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            host = addresses[0]
            host = f"[{host}]" if ":" in host else host
            pod = (endpoint.get("targetRef") or {}).get("name") or addresses[0]
            urls[pod] = f"http://{host}:{port}/metrics"
    return urls
