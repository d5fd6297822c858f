"""Issue 18, item 9: an LLMDeployment's pods stay inside the operator's boundary.

Each hostile LLMDeployment below ends as Failed / Degraded=True `PolicyViolation`, one
Warning Event naming the field, and nothing applied; the boundary is checked on the rendered
pod template (after the podTemplate merge), so the same spec is refused by `llmops render`.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llm_operator.plan import Observed, ReconcileSettings, decide
from llm_operator.render import RenderSettings
from llm_operator.render.policy import (
    PodPolicy,
    add_policy_arguments,
    image_allowed,
    policy_from_args,
    under_prefix,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = ReconcileSettings()
MANIFEST: dict[str, Any] = {
    "apiVersion": "inference.llmops.dev/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "chat", "namespace": "ns", "uid": "u-1", "generation": 3},
    "spec": {
        "model": {"uri": "hf://org/model", "parameterCount": "8B"},
        "accelerator": {"type": "L4"},
    },
}
SPEC = "spec.template.spec"
MAIN = f"{SPEC}.containers[llm-server]"


def manifest(uri: str | None = None, **server: Any) -> dict[str, Any]:
    out = copy.deepcopy(MANIFEST)
    if uri is not None:
        out["spec"]["model"]["uri"] = uri
    if server:
        out["spec"]["server"] = server
    return out


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"podTemplate": {"spec": spec}}


def main(**fields: Any) -> dict[str, Any]:
    return pod({"containers": [{"name": "llm-server", **fields}]})


def env_secret(name: str) -> dict[str, Any]:
    ref = {"secretKeyRef": {"name": name, "key": "k"}}
    return {"env": [{"name": "STOLEN", "valueFrom": ref}]}


SIDECAR = {
    "name": "side",
    "image": "ghcr.io/llmops-dev/llm-server:x",
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}

HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("file-root", manifest("file:///"), f"{SPEC}.volumes[model].hostPath.path"),
    ("file-etc", manifest("file:///etc"), f"{SPEC}.volumes[model].hostPath.path"),
    (
        "file-kubelet-pods",
        manifest("file:///var/lib/kubelet/pods"),
        f"{SPEC}.volumes[model].hostPath.path",
    ),
    (
        "hostpath-volume-root",
        manifest(**pod({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]})),
        f"{SPEC}.volumes[root].hostPath.path",
    ),
    (
        "privileged",
        manifest(**main(securityContext={"privileged": True})),
        f"{MAIN}.securityContext.privileged",
    ),
    (
        "privilege-escalation",
        manifest(**main(securityContext={"allowPrivilegeEscalation": True})),
        f"{MAIN}.securityContext.allowPrivilegeEscalation",
    ),
    (
        "capabilities-add",
        manifest(**main(securityContext={"capabilities": {"add": ["SYS_ADMIN"]}})),
        f"{MAIN}.securityContext.capabilities.add",
    ),
    (
        "capabilities-drop-replaced",
        manifest(**main(securityContext={"capabilities": {"drop": ["NET_RAW"]}})),
        f"{MAIN}.securityContext.capabilities.drop",
    ),
    ("host-pid", manifest(**pod({"hostPID": True})), f"{SPEC}.hostPID"),
    ("host-network", manifest(**pod({"hostNetwork": True})), f"{SPEC}.hostNetwork"),
    ("host-ipc", manifest(**pod({"hostIPC": True})), f"{SPEC}.hostIPC"),
    (
        "run-as-root",
        manifest(**pod({"securityContext": {"runAsUser": 0}})),
        f"{SPEC}.securityContext.runAsUser",
    ),
    (
        "run-as-non-root-false",
        manifest(**main(securityContext={"runAsNonRoot": False})),
        f"{MAIN}.securityContext.runAsNonRoot",
    ),
    (
        "seccomp-unconfined",
        manifest(**pod({"securityContext": {"seccompProfile": {"type": "Unconfined"}}})),
        f"{SPEC}.securityContext.seccompProfile.type",
    ),
    (
        "service-account",
        manifest(**pod({"serviceAccountName": "cluster-admin-sa"})),
        f"{SPEC}.serviceAccountName",
    ),
    (
        "token-automount",
        manifest(**pod({"automountServiceAccountToken": True})),
        f"{SPEC}.automountServiceAccountToken",
    ),
    (
        "extra-privileged-container",
        manifest(**pod({"containers": [{**SIDECAR, "securityContext": {"privileged": True}}]})),
        f"{SPEC}.containers[side].securityContext.privileged",
    ),
    (
        "extra-container-foreign-image",
        manifest(**pod({"containers": [{**SIDECAR, "image": "docker.io/evil/miner"}]})),
        f"{SPEC}.containers[side].image",
    ),
    (
        "init-container-foreign-image",
        manifest(**pod({"initContainers": [{**SIDECAR, "image": "busybox"}]})),
        f"{SPEC}.initContainers[side].image",
    ),
    ("server-image", manifest(image="docker.io/evil/llm:1"), f"{MAIN}.image"),
    (
        "image-prefix-lookalike",
        manifest(image="ghcr.io/llmops-dev/llm-server-evil:1"),
        f"{MAIN}.image",
    ),
    (
        "env-secret",
        manifest(env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}}]),
        f"{MAIN}.env[X].valueFrom.secretKeyRef.name",
    ),
    (
        "pod-template-env-secret",
        manifest(**main(**env_secret("kube-admin"))),
        f"{MAIN}.env[STOLEN].valueFrom.secretKeyRef.name",
    ),
    (
        "env-from-secret",
        manifest(**main(envFrom=[{"secretRef": {"name": "db"}}])),
        f"{MAIN}.envFrom[0].secretRef.name",
    ),
    (
        "secret-volume",
        manifest(**pod({"volumes": [{"name": "s", "secret": {"secretName": "db"}}]})),
        f"{SPEC}.volumes[s].secret.secretName",
    ),
    (
        "projected-secret",
        manifest(
            **pod(
                {"volumes": [{"name": "p", "projected": {"sources": [{"secret": {"name": "db"}}]}}]}
            )
        ),
        f"{SPEC}.volumes[p].projected.sources[0].secret.name",
    ),
    (
        "nfs-volume",
        manifest(**pod({"volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]})),
        f"{SPEC}.volumes[n].nfs",
    ),
    (
        "host-port",
        manifest(**main(ports=[{"containerPort": 8000, "hostPort": 80}])),
        f"{MAIN}.ports[8000].hostPort",
    ),
    (
        "unsafe-sysctl",
        manifest(
            **pod({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}})
        ),
        f"{SPEC}.securityContext.sysctls[kernel.msgmax]",
    ),
    (
        "replace-security-context",
        manifest(**main(securityContext={"$patch": "replace"})),
        f"{MAIN}.securityContext.allowPrivilegeEscalation",
    ),
]


@pytest.mark.parametrize(("m", "field"), [(m, f) for _, m, f in HOSTILE],
                         ids=[i for i, _, _ in HOSTILE])  # fmt: skip
def test_a_hostile_llmdeployment_fails_with_the_field_named(m: dict[str, Any], field: str) -> None:
    plan = decide(m, Observed(), NOW, SETTINGS)
    assert plan.apply == () and plan.error is not None
    assert plan.error.reason == "PolicyViolation" and field in plan.error.message
    assert plan.status is not None and plan.status["phase"] == "Failed"
    degraded = next(c for c in plan.status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "PolicyViolation"
    assert field in degraded["message"]
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "PolicyViolation")]
    assert field in plan.events[0].message


def test_the_same_refusal_is_not_repeated_as_a_second_event() -> None:
    m = manifest(**pod({"hostPID": True}))
    first = decide(m, Observed(), NOW, SETTINGS)
    again = decide({**m, "status": first.status}, Observed(), NOW, SETTINGS)
    assert again.events == () and again.status is None and again.error is not None


def test_the_default_spec_and_harmless_templates_pass() -> None:
    for m in (
        MANIFEST,
        manifest(**main(env=[{"name": "LOG", "value": "1"}])),
        manifest(**pod({"containers": [SIDECAR], "nodeSelector": {"pool": "gpu"}})),
        manifest(
            env=[{"name": "HF", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "t"}}}]
        ),
        manifest(
            env=[{"name": "K", "valueFrom": {"secretKeyRef": {"name": "llm-keys", "key": "t"}}}]
        ),
        manifest("pvc://model-store/llama"),
        manifest("oci://registry.example.com/models/llama:8b"),
    ):
        plan = decide(m, Observed(), NOW, SETTINGS)
        assert plan.error is None, plan.error
        assert plan.apply


def _settings(**policy: Any) -> ReconcileSettings:
    return ReconcileSettings(render=RenderSettings(pod_policy=PodPolicy(**policy)))


def test_the_operator_settings_open_the_boundary() -> None:
    cases = [
        (manifest("file:///models/tiny"), {"allowed_host_paths": ("/models",)}),
        (manifest(image="registry.corp/llm:2"), {"allowed_image_registries": ("registry.corp/",)}),
        (manifest(**pod({"hostNetwork": True})), {"allow_host_namespaces": True}),
        (
            manifest(**pod({"serviceAccountName": "reader"})),
            {"allowed_service_accounts": ("reader",)},
        ),
        (manifest(**main(**env_secret("team-db"))), {"allowed_secrets": ("team-*",)}),
    ]
    for m, policy in cases:
        assert decide(m, Observed(), NOW, SETTINGS).error is not None
        assert decide(m, Observed(), NOW, _settings(**policy)).error is None


def test_host_path_prefixes_do_not_escape() -> None:
    allowed = ("/models",)
    assert under_prefix("/models", allowed) and under_prefix("/models/a/b.gguf", allowed)
    assert not under_prefix("/models/../etc", allowed)
    assert not under_prefix("/modelsX", allowed)
    assert not under_prefix("models", allowed)
    m = manifest("file:///models/../etc")
    assert decide(m, Observed(), NOW, _settings(allowed_host_paths=allowed)).error is not None


def test_image_prefixes() -> None:
    own = ("ghcr.io/llmops-dev/llm-server",)
    assert image_allowed("ghcr.io/llmops-dev/llm-server:0.1-cpu", own)
    assert image_allowed("ghcr.io/llmops-dev/llm-server@sha256:ab", own)
    assert not image_allowed("ghcr.io/llmops-dev/llm-server2:1", own)
    assert not image_allowed("evil.io/ghcr.io/llmops-dev/llm-server:1", own)
    assert image_allowed("registry.corp/team/x:1", ("registry.corp/",))


def test_the_default_registry_follows_the_image_repository() -> None:
    settings = ReconcileSettings(render=RenderSettings(image_repository="registry.corp/llm"))
    assert decide(manifest(image="registry.corp/llm:2"), Observed(), NOW, settings).error is None
    assert decide(MANIFEST, Observed(), NOW, settings).error is None


def test_an_api_key_secret_named_in_the_spec_is_allowed() -> None:
    """spec.server.apiKeySecret renders LLM_SERVER_API_KEY from that Secret: allowed by name,
    while the same Secret through the podTemplate or another env stays refused unless it is
    the one named."""
    keyed = manifest(apiKeySecret={"name": "team-keys", "key": "keys"})
    plan = decide(keyed, Observed(), NOW, SETTINGS)
    assert plan.error is None, plan.error
    other = manifest(**main(**env_secret("team-other")))
    other["spec"]["server"]["apiKeySecret"] = {"name": "team-keys", "key": "keys"}
    assert decide(other, Observed(), NOW, SETTINGS).error is not None


def test_flags_parse_into_the_policy() -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_policy_arguments(p)
    args = p.parse_args(
        ["--allowed-host-paths", "/models,/data", "--allowed-secrets", "a-*",
         "--allowed-image-registries", "r.io/", "--allow-host-namespaces"]
    )  # fmt: skip
    policy = policy_from_args(args)
    assert policy == PodPolicy(
        allowed_host_paths=("/models", "/data"),
        allowed_image_registries=("r.io/",),
        allowed_secrets=("a-*",),
        allow_host_namespaces=True,
    )
    assert policy_from_args(p.parse_args([])) == PodPolicy()
    assert replace(PodPolicy(), allowed_host_paths=()) == PodPolicy()


def test_llmops_render_and_validate_report_it_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from llm_operator.cli import main as llmops

    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(manifest(**pod({"hostPID": True}))))
    assert llmops(["render", "-f", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"PolicyViolation: {SPEC}.hostPID" in err
    assert llmops(["validate", "-f", str(path)]) == 2
    assert f"PolicyViolation: {SPEC}.hostPID" in capsys.readouterr().out
    assert llmops(["validate", "--allow-host-namespaces", "-f", str(path)]) == 0
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(manifest("file:///models/tiny")))
    assert llmops(["render", "-f", str(tiny)]) == 2
    assert llmops(["render", "--allowed-host-paths", "/models", "-f", str(tiny)]) == 0


# Issue 18, item 11: secrets stay out of the ConfigMap (server-args.json) and the pod spec.
SECRET_ARGS = [
    ["--api-key", "sk-1"],
    ["--api-key=sk-1"],
    ["--hf-token", "x"],
    ["--HF_TOKEN=x"],
    ["--db-password", "x"],
    ["--client-secret=x"],
    ["--aws-access-key", "x"],
    ["--auth-token=x"],
    ["hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"],
    ["sk-abcdefghijklmnopqrstuvwxyz0123"],
]


@pytest.mark.parametrize("args", SECRET_ARGS, ids=[a[0][:16] for a in SECRET_ARGS])
def test_secret_looking_server_args_are_refused_and_point_to_a_secret(args: list[str]) -> None:
    plan = decide(manifest(args=args), Observed(), NOW, SETTINGS)
    assert plan.apply == () and plan.error is not None  # no ConfigMap holds it
    assert plan.error.reason == "PolicyViolation"
    assert f"{MAIN}.args[" in plan.error.message and "secretKeyRef" in plan.error.message
    for secret in ("sk-1", "=x", "hf_abc", "sk-abc"):  # the value is never repeated
        assert secret not in plan.error.message and secret not in plan.events[0].message


def test_secret_args_through_the_pod_template_are_refused_too() -> None:
    m = manifest(**main(args=["--port", "8000", "--hf-token=x"]))
    plan = decide(m, Observed(), NOW, SETTINGS)
    assert plan.error is not None and f"{MAIN}.args[2]" in plan.error.message


def test_ordinary_server_args_pass() -> None:
    args = ["--max-num-batched-tokens", "4096", "--tokenizer", "x", "--max-tokens=5",
            "--enable-prefix-caching", "--kv-cache-dtype", "fp8", "--key-value-cache"]  # fmt: skip
    plan = decide(manifest(args=args), Observed(), NOW, SETTINGS)
    assert plan.error is None, plan.error
