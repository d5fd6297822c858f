"""kube_targets: LLMDeployments and EndpointSlices, as the API server sends them, to targets."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.directory import ModelTarget, Replica
from llm_gateway.kube_targets import (
    Collision,
    Deployment,
    build_targets,
    parse_deployment,
    slice_endpoints,
)
from llm_operator.api.demand import DEMAND_ANNOTATION
from llm_operator.render.names import child_name


def llmd(
    name: str, namespace: str = "ns", created: str = "2026-01-01T00:00:00Z", **model: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "inference.llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {
            "name": name, "namespace": namespace, "creationTimestamp": created,
            "uid": "u-" + name, "resourceVersion": "7", "generation": 1,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"model": {"uri": "hf://org/tiny", **model}, "accelerator": {"type": "cpu"}},
        # A status field this gateway's API model does not know must not hide the model.
        "status": {"phase": "Ready", "someFutureField": {"x": 1}},
    }  # fmt: skip


def endpoint(pod: str, ip: str, **conditions: bool) -> dict[str, Any]:
    return {
        "addresses": [ip],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "name": pod, "namespace": "ns"},
    }


def eslice(
    service: str, endpoints: list[dict[str, Any]], port_name: str = "http", **extra: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{service}-abcde",
            "namespace": "ns",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": 8000, "protocol": "TCP"}],
        "endpoints": endpoints,
        **extra,
    }


def test_a_deployment_is_parsed_with_the_operators_model() -> None:
    parsed = parse_deployment(llmd("chat.v1", servedName="chat"))
    assert parsed == Deployment("ns", "chat.v1", "chat", "2026-01-01T00:00:00Z",
                                child_name("chat.v1"), None,
                                capacity_per_replica=64)  # the batching default  # fmt: skip
    assert parsed.service != "chat.v1"  # a dotted name's Service has no dots
    # Without servedName, the URI's last segment, as the operator tells the server.
    assert parse_deployment(llmd("plain")).model == "tiny"
    stamped = llmd("plain")
    stamped["metadata"]["annotations"] = {DEMAND_ANNOTATION: "2026-01-01T00:00:05Z"}
    assert parse_deployment(stamped).demand_stamp == "2026-01-01T00:00:05Z"
    # The fair queue's capacity: what one replica batches at once.
    batched = llmd("plain")
    batched["spec"]["optimization"] = {"batching": {"maxConcurrentSequences": 3}}
    assert parse_deployment(batched).capacity_per_replica == 3


@pytest.mark.parametrize(
    "broken",
    [
        {"spec": {"model": {"uri": "ftp://nope"}, "accelerator": {"type": "cpu"}}},
        {"spec": {"model": {"uri": "hf://org/m", "servedName": "bad name!"}}},
        {"spec": {}},
    ],
)
def test_an_invalid_deployment_raises_value_error(broken: dict[str, Any]) -> None:
    obj = llmd("chat")
    obj["spec"] = broken["spec"]
    with pytest.raises(ValueError):
        parse_deployment(obj)


def test_slice_endpoints_read_conditions_address_and_the_http_port() -> None:
    found = slice_endpoints(
        eslice(
            "chat",
            [
                endpoint("a", "10.0.0.1", ready=True),
                endpoint("b", "10.0.0.2", ready=False),
                endpoint("c", "10.0.0.3", ready=False, serving=True, terminating=True),
                endpoint("d", "10.0.0.4"),  # unset: ready, not terminating (the API's rule)
                {"addresses": [], "conditions": {"ready": True}},  # no address: skipped
            ],
        )
    )
    assert found is not None and (found.namespace, found.service) == ("ns", "chat")
    assert found.replicas == (
        Replica("a", "http://10.0.0.1:8000", ready=True, terminating=False),
        Replica("b", "http://10.0.0.2:8000", ready=False, terminating=False),
        Replica("c", "http://10.0.0.3:8000", ready=False, terminating=True),
        Replica("d", "http://10.0.0.4:8000", ready=True, terminating=False),
    )
    ipv6 = slice_endpoints(eslice("chat", [endpoint("e", "fd00::5")], addressType="IPv6"))
    assert ipv6 is not None and ipv6.replicas[0].url == "http://[fd00::5]:8000"
    # FQDN slices (the integration tests' loopback pods): the address is dialled as written.
    fqdn = slice_endpoints(eslice("chat", [endpoint("f", "127.0.3.4")], addressType="FQDN"))
    assert fqdn is not None and fqdn.replicas[0].url == "http://127.0.3.4:8000"


def test_a_slice_without_the_http_port_or_a_service_is_ignored() -> None:
    assert slice_endpoints(eslice("chat", [endpoint("a", "10.0.0.1")], port_name="grpc")) is None
    no_service = eslice("chat", [endpoint("a", "10.0.0.1")])
    no_service["metadata"]["labels"] = {}
    assert slice_endpoints(no_service) is None


def test_targets_join_deployments_to_their_services_slices() -> None:
    chat = parse_deployment(llmd("chat", servedName="chat"))
    code = parse_deployment(llmd("code", servedName="code"))
    slices = [
        slice_endpoints(eslice("chat", [endpoint("chat-2", "10.0.0.2")])),
        slice_endpoints(
            eslice("chat", [endpoint("chat-1", "10.0.0.1"), endpoint("chat-2", "10.0.0.2")])
        ),
        slice_endpoints(eslice("other", [endpoint("x", "10.0.0.9")])),
    ]
    targets, collisions = build_targets([chat, code], [s for s in slices if s])
    assert collisions == []
    assert targets["chat"] == ModelTarget(
        "chat", "ns", "chat",
        (Replica("chat-1", "http://10.0.0.1:8000", True, False),
         Replica("chat-2", "http://10.0.0.2:8000", True, False)),
        capacity_per_replica=64,
    )  # fmt: skip
    # Known, at zero replicas.
    assert targets["code"] == ModelTarget("code", "ns", "code", (), capacity_per_replica=64)


def test_two_deployments_serving_one_model_route_to_the_oldest() -> None:
    old = parse_deployment(llmd("b-old", "team-b", "2026-01-01T00:00:00Z", servedName="m"))
    new = parse_deployment(llmd("a-new", "team-a", "2026-02-01T00:00:00Z", servedName="m"))
    same_age = parse_deployment(llmd("c-same", "team-a", "2026-01-01T00:00:00Z", servedName="m"))
    targets, collisions = build_targets([new, same_age, old], [])
    # Oldest first; at the same age, namespace/name decides (team-a/c-same < team-b/b-old).
    assert (targets["m"].namespace, targets["m"].deployment) == ("team-a", "c-same")
    assert collisions == [
        Collision("m", ("team-a", "c-same"), (("team-b", "b-old"), ("team-a", "a-new")))
    ]
