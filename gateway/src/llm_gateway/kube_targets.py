"""From LLMDeployments and EndpointSlices (as the API server sends them) to ModelTargets. Pure.

A deployment is parsed once, when it arrives, with the operator's own model; its replicas are
the endpoints of the EndpointSlices of its Service (label kubernetes.io/service-name =
child_name(name)), at the address and the slice's port named `http`. Two deployments that
serve the same model name: the oldest wins (creationTimestamp, then namespace/name), so every
gateway replica picks the same one without talking to the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llm_gateway.directory import ModelTarget, Replica
from llm_operator.api import LLMDeployment
from llm_operator.api.demand import DEMAND_ANNOTATION
from llm_operator.api.status import BUDGET_LIMITED
from llm_operator.render.names import child_name

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PORT_NAME = "http"  # the Service's port (service.yaml.j2), targetPort the pod's `http`


@dataclass(frozen=True)
class Deployment:
    """What the gateway needs of one LLMDeployment."""

    namespace: str
    name: str
    model: str  # spec.model.served_model_name
    created: str  # creationTimestamp (RFC 3339, so it sorts as text)
    service: str  # child_name(name)
    demand_stamp: str | None  # the DEMAND_ANNOTATION value, if any
    dollars_per_million_tokens: float | None = None  # status.cost, the operator's figure
    budget_limited: bool = False  # status condition BudgetLimited is True (routes skip it)
    capacity_per_replica: int | None = None  # spec.optimization.batching.maxConcurrentSequences

    @property
    def age_key(self) -> tuple[str, str, str]:
        return (self.created, self.namespace, self.name)


@dataclass(frozen=True)
class SliceEndpoints:
    """The replicas one EndpointSlice lists for its Service."""

    namespace: str
    service: str
    replicas: tuple[Replica, ...]


@dataclass(frozen=True)
class Collision:
    """Deployments serving one model name; `winner` is routed to, the others are not."""

    model: str
    winner: tuple[str, str]  # (namespace, name)
    losers: tuple[tuple[str, str], ...]


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def parse_deployment(obj: Mapping[str, Any]) -> Deployment:
    """Raises ValueError (pydantic's ValidationError is one) when the object is not valid."""
    # Only metadata and spec: a status written by a newer operator must not hide the model.
    manifest = {"metadata": obj.get("metadata") or {}, "spec": obj.get("spec") or {}}
    resource = LLMDeployment.from_manifest(manifest)
    meta = obj["metadata"]
    name = resource.metadata.name
    return Deployment(
        namespace=str(meta.get("namespace") or ""),
        name=name,
        model=resource.spec.model.served_model_name,
        created=str(meta.get("creationTimestamp") or ""),
        service=child_name(name),
        demand_stamp=(meta.get("annotations") or {}).get(DEMAND_ANNOTATION),
        dollars_per_million_tokens=_price(obj),
        budget_limited=_budget_limited(obj),
        capacity_per_replica=resource.spec.optimization.batching.max_concurrent_sequences,
    )


def _price(obj: Mapping[str, Any]) -> float | None:
    """status.cost.dollarsPerMillionTokens, read alone: a status the model cannot parse
    (a newer operator's) must not hide the deployment."""
    cost = (obj.get("status") or {}).get("cost")
    price = cost.get("dollarsPerMillionTokens") if isinstance(cost, dict) else None
    if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
        return None
    return float(price)


def _budget_limited(obj: Mapping[str, Any]) -> bool:
    """Whether status.conditions has BudgetLimited True (read alone, like the price)."""
    conditions = (obj.get("status") or {}).get("conditions")
    return isinstance(conditions, list) and any(
        isinstance(c, dict) and c.get("type") == BUDGET_LIMITED and c.get("status") == "True"
        for c in conditions
    )


def _url(address: str, address_type: str, port: int) -> str:
    host = f"[{address}]" if address_type == "IPv6" or ":" in address else address
    return f"http://{host}:{port}"


def slice_endpoints(obj: Mapping[str, Any]) -> SliceEndpoints | None:
    """The slice's replicas, or None when it is not a Service's or has no port named http."""
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    port = next((p.get("port") for p in obj.get("ports") or [] if p.get("name") == PORT_NAME), None)
    if not service or port is None:
        return None
    address_type = str(obj.get("addressType") or "IPv4")
    replicas = []
    for endpoint in obj.get("endpoints") or []:
        addresses = endpoint.get("addresses") or []
        if not addresses:
            continue
        conditions = endpoint.get("conditions") or {}
        target = endpoint.get("targetRef") or {}
        replicas.append(
            Replica(
                pod=str(target.get("name") or addresses[0]),
                url=_url(addresses[0], address_type, int(port)),
                # The API: an unset `ready` means ready, an unset `terminating` means not.
                ready=conditions.get("ready") is not False,
                terminating=conditions.get("terminating") is True,
            )
        )
    return SliceEndpoints(str(meta.get("namespace") or ""), str(service), tuple(replicas))


def _merge(slices: Iterable[SliceEndpoints]) -> tuple[Replica, ...]:
    # A pod moving between slices may show in two for a moment: one entry per pod.
    by_pod: dict[str, Replica] = {}
    for found in slices:
        for replica in found.replicas:
            by_pod.setdefault(replica.pod, replica)
    return tuple(sorted(by_pod.values(), key=lambda r: r.pod))


def build_targets(
    deployments: Iterable[Deployment], slices: Iterable[SliceEndpoints]
) -> tuple[dict[str, ModelTarget], list[Collision]]:
    """One ModelTarget per served model name, and the name collisions resolved on the way."""
    by_service: dict[tuple[str, str], list[SliceEndpoints]] = {}
    for found in slices:
        by_service.setdefault((found.namespace, found.service), []).append(found)
    by_model: dict[str, list[Deployment]] = {}
    for deployment in deployments:
        by_model.setdefault(deployment.model, []).append(deployment)
    targets: dict[str, ModelTarget] = {}
    collisions: list[Collision] = []
    for model, candidates in sorted(by_model.items()):
        ordered = sorted(candidates, key=lambda d: d.age_key)
        winner = ordered[0]
        if len(ordered) > 1:
            collisions.append(
                Collision(
                    model,
                    (winner.namespace, winner.name),
                    tuple((d.namespace, d.name) for d in ordered[1:]),
                )
            )
        replicas = _merge(by_service.get((winner.namespace, winner.service), []))
        targets[model] = ModelTarget(
            model, winner.namespace, winner.name, replicas, winner.dollars_per_million_tokens,
            winner.budget_limited, winner.capacity_per_replica,
        )  # fmt: skip
    return targets, collisions
