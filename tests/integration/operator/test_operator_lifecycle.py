"""create -> children by server-side apply + Progressing; pods Ready on a GPU node -> Ready;
spec change -> a rollout of what changed only; a child deleted by hand comes back; delete ->
the garbage collector removes every child. All on the real control plane."""

from __future__ import annotations

from typing import Any

from kube_client import Kube, wait_until
from operator_harness import Llmd, gpu_node, manifest
from operator_thread import operator_config, running_operator

from llm_operator.plan import FallbackSettings
from llm_operator.render import CONFIG_HASH_ANNOTATION

FIELD_MANAGER = "llm-operator"


def config_hash(llmd: Llmd) -> str:
    template = llmd.deployment()["spec"]["template"]
    return str(template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


def test_create_applies_children_with_owner_references(
    kube: Kube, namespace: str, operator_env: None
) -> None:
    llmd = Llmd(kube, namespace)
    # No node has an L4: the pod stays Pending, and no fallback within the test.
    patient = FallbackSettings(unschedulable_seconds=3600)
    with running_operator(operator_config(namespace, fallback=patient)):
        uid = llmd.create(manifest(namespace))["metadata"]["uid"]
        wait_until(lambda: llmd.condition("Progressing"), 60, "a Progressing condition")
        children = wait_until(lambda: all(llmd.children()) and llmd.children(), 60, "children")
        for child in children:
            owners = child["metadata"]["ownerReferences"]
            assert [(o["kind"], o["uid"], o["controller"]) for o in owners] == [
                ("LLMDeployment", uid, True)
            ]
            # Server-side apply with the one field manager; nothing created by other means.
            managers = {(f["manager"], f["operation"]) for f in child["metadata"]["managedFields"]}
            assert (FIELD_MANAGER, "Apply") in managers
            assert not {m for m, op in managers if op != "Apply" and m == FIELD_MANAGER}
        status = llmd.status()
        assert status["phase"] == "Progressing"
        assert llmd.condition("Progressing")["status"] == "True"
        assert llmd.condition("Ready")["status"] == "False"
        assert status["accelerator"] == {"type": "L4", "count": 1, "capacity": "on-demand"}
        assert status["quantization"] == "int8"
        assert status["endpoint"] == f"http://chat.{namespace}.svc/v1"
        assert llmd.events() == [("Normal", "Created")]


def test_pods_ready_on_a_gpu_node_make_it_ready(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None
) -> None:
    node = gpu_node(nodes, namespace, "L4")
    llmd = Llmd(kube, namespace)
    with running_operator(operator_config(namespace)):
        llmd.create(manifest(namespace))
        wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "phase Ready")
        assert llmd.condition("Ready")["status"] == "True"
        assert llmd.condition("Progressing")["reason"] == "RolloutComplete"
        assert llmd.status()["readyReplicas"] == 1
        (pod,) = llmd.pods()
        assert pod["spec"]["nodeName"] == node  # the scheduler honoured the GPU affinity
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        wait_until(lambda: ("Normal", "Ready") in llmd.events(), 60, "a Ready Event")
        assert llmd.events() == [("Normal", "Created"), ("Normal", "Ready")]


def test_spec_change_rolls_the_deployment_and_nothing_else(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None
) -> None:
    gpu_node(nodes, namespace, "L4")
    llmd = Llmd(kube, namespace)
    with running_operator(operator_config(namespace)):
        llmd.create(manifest(namespace))
        wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "phase Ready")
        before_hash = config_hash(llmd)
        before = {c["kind"]: c["metadata"] for c in llmd.children() if c}
        old_pods = {p["metadata"]["name"] for p in llmd.pods()}

        spec = manifest(namespace)["spec"]
        spec["model"]["maxContextLength"] = 2048
        llmd.patch_spec(spec)
        wait_until(lambda: llmd.status().get("observedGeneration") == 2, 60, "generation 2")
        assert config_hash(llmd) != before_hash

        def rolled() -> bool:  # the Deployment controller replaced the pod; it is Ready
            pods = llmd.pods()
            names = {p["metadata"]["name"] for p in pods}
            return bool(pods) and not names & old_pods and llmd.status().get("phase") == "Ready"

        wait_until(rolled, 120, "a new Ready pod")
        after = {c["kind"]: c["metadata"] for c in llmd.children() if c}
        # Only the ConfigMap and the Deployment's spec changed; the others were not rewritten.
        assert after["ConfigMap"]["resourceVersion"] != before["ConfigMap"]["resourceVersion"]
        assert after["Deployment"]["generation"] == before["Deployment"]["generation"] + 1
        assert after["Service"]["resourceVersion"] == before["Service"]["resourceVersion"]
        pdb_before, pdb_after = before["PodDisruptionBudget"], after["PodDisruptionBudget"]
        assert pdb_after["generation"] == pdb_before["generation"]
        args = llmd.deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--max-model-len") + 1] == "2048"


def test_child_deleted_by_hand_is_recreated(kube: Kube, namespace: str, operator_env: None) -> None:
    llmd = Llmd(kube, namespace)
    with running_operator(operator_config(namespace)):
        llmd.create(manifest(namespace))
        service = wait_until(lambda: llmd.child("v1", "Service"), 60, "the Service")
        kube.delete("v1", "Service", "chat", namespace)
        again = wait_until(
            lambda: (
                (s := llmd.child("v1", "Service"))
                and s["metadata"]["uid"] != service["metadata"]["uid"]
                and s
            ),
            60,
            "the Service re-created",
        )
        assert again["spec"]["selector"] == service["spec"]["selector"]


def test_delete_lets_the_garbage_collector_remove_every_child(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None
) -> None:
    gpu_node(nodes, namespace, "L4")
    llmd = Llmd(kube, namespace)
    with running_operator(operator_config(namespace)):
        llmd.create(manifest(namespace))
        wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "phase Ready")
        assert kube.list("apps/v1", "ReplicaSet", namespace)
        llmd.delete()
        wait_until(lambda: llmd.get() is None, 60, "the LLMDeployment gone (finalizer released)")

        def leftovers() -> list[str]:
            return [
                f"{kind}/{o['metadata']['name']}"
                for api_version, kind in (
                    ("v1", "ConfigMap"),
                    ("v1", "Service"),
                    ("apps/v1", "Deployment"),
                    ("apps/v1", "ReplicaSet"),
                    ("v1", "Pod"),
                    ("policy/v1", "PodDisruptionBudget"),
                )
                for o in kube.list(api_version, kind, namespace)
                if kind != "ConfigMap" or o["metadata"]["name"] != "kube-root-ca.crt"
            ]

        wait_until(lambda: not leftovers(), 120, "every child garbage-collected")
