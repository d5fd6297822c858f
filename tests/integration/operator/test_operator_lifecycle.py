"""create -> children + Progressing; ready pods -> Ready; spec change -> only what changed."""

from __future__ import annotations

from operator_harness import LLMD, Cluster, condition, eventually, manifest, running_operator

from llm_operator.render import CONFIG_HASH_ANNOTATION

CHILDREN = (
    ("v1/configmaps", "chat-config"),
    ("v1/services", "chat"),
    ("apps/v1/deployments", "chat"),
    ("policy/v1/poddisruptionbudgets", "chat"),
)
DEPLOYMENTS = "apps/v1/deployments"


def config_hash(cluster: Cluster) -> str:
    deployment = cluster.get(DEPLOYMENTS, "chat") or {}
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


async def test_create_makes_children_with_owner_references(cluster: Cluster) -> None:
    async with running_operator():
        created = await cluster.create(LLMD, manifest())
        uid = created["metadata"]["uid"]
        await eventually(lambda: condition(cluster.get(LLMD, "chat"), "Progressing"))
        for resource, name in CHILDREN:
            child = await eventually(lambda r=resource, n=name: cluster.get(r, n))
            owners = child["metadata"]["ownerReferences"]
            assert [(o["kind"], o["uid"], o["controller"]) for o in owners] == [
                ("LLMDeployment", uid, True)
            ]
            # One apply each; KMock answers it 404 (it does not create on apply), so one create.
            assert cluster.requests("PATCH", resource, name) == 1
            assert cluster.requests("POST", resource, name) == 1
        llmd = cluster.get(LLMD, "chat")
        assert llmd["status"]["phase"] == "Progressing"
        assert condition(llmd, "Progressing")["status"] == "True"
        assert condition(llmd, "Ready")["status"] == "False"
        assert llmd["status"]["accelerator"] == {"type": "L4", "count": 1, "capacity": "on-demand"}
        assert llmd["status"]["quantization"] == "int8"
        assert llmd["status"]["endpoint"] == "http://chat.default.svc/v1"
        assert [e["reason"] for e in cluster.events("chat")] == ["Created"]


async def test_ready_pods_make_it_ready(cluster: Cluster) -> None:
    async with running_operator():
        await cluster.create(LLMD, manifest())
        await eventually(lambda: cluster.get(DEPLOYMENTS, "chat"))
        # The Deployment controller's part: one up-to-date pod is ready.
        ready = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
        await cluster.patch(DEPLOYMENTS, "chat", {"status": ready}, sub="status")
        await eventually(lambda: cluster.status("chat").get("phase") == "Ready")
        llmd = cluster.get(LLMD, "chat")
        assert condition(llmd, "Ready")["status"] == "True"
        assert condition(llmd, "Progressing")["reason"] == "RolloutComplete"
        assert llmd["status"]["readyReplicas"] == 1
        assert [e["reason"] for e in cluster.events("chat")] == ["Created", "Ready"]


async def test_spec_change_rolls_the_deployment_and_nothing_else(cluster: Cluster) -> None:
    async with running_operator():
        await cluster.create(LLMD, manifest())
        await eventually(lambda: all(cluster.get(r, n) for r, n in CHILDREN))
        await eventually(lambda: cluster.status("chat"))
        before = config_hash(cluster)
        patches = {r: cluster.requests("PATCH", r, n) for r, n in CHILDREN}

        spec = manifest()["spec"]
        spec["model"]["maxContextLength"] = 2048
        await cluster.patch(LLMD, "chat", {"spec": spec})
        await eventually(lambda: cluster.status("chat").get("observedGeneration") == 2)
        assert config_hash(cluster) != before
        after = {r: cluster.requests("PATCH", r, n) for r, n in CHILDREN}
        changed = {r for r in after if after[r] != patches[r]}
        assert changed == {"v1/configmaps", "apps/v1/deployments"}
        assert all(after[r] - patches[r] == 1 for r in changed)  # one write per changed child


async def test_child_deleted_by_hand_is_recreated(cluster: Cluster) -> None:
    async with running_operator():
        await cluster.create(LLMD, manifest())
        await eventually(lambda: cluster.get("v1/services", "chat"))
        await cluster.delete("v1/services", "chat")
        await eventually(lambda: cluster.get("v1/services", "chat"))
        assert cluster.requests("POST", "v1/services", "chat") == 2
