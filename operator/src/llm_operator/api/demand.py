"""How the gateway tells the operator that a deployment at zero replicas has waiting requests.

The gateway holds a request for a model with no ready replica and stamps the LLMDeployment with
this annotation (an RFC 3339 UTC time, refreshed at most every DEMAND_REFRESH_SECONDS while
requests are held). The operator reconciles on the change and keeps at least one replica while
the stamp is newer than the scale-down window. An annotation, not status: status belongs to the
operator, and several stateless gateway replicas may write it; the newest stamp wins.
"""

from __future__ import annotations

from datetime import UTC, datetime

DEMAND_ANNOTATION = "inference.llmops.dev/last-held-request"
DEMAND_REFRESH_SECONDS = 5.0


def demand_stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_demand_stamp(value: str | None) -> datetime | None:
    """The stamp's time, or None when absent or unreadable (a hand edit must not break scaling)."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
