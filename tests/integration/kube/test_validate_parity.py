"""Issue 16, item 7: one table of LLMDeployment manifests, each sent as YAML to the real API
server (server-side dry-run create, `fieldValidation=Strict` as kubectl sends it) and to
`llmops validate`; they must agree on valid / invalid. The YAML text goes to both unparsed,
so the server's YAML reading (nulls dropped, whole floats as integers) is part of the check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from control_plane import ControlPlane, kubeconfig
from kube_client import Kube

from llm_operator.cli import main

MODEL = """\
  model:
    uri: hf://meta-llama/Llama-3.1-8B-Instruct
    parameterCount: 8B
"""
ACCELERATOR = """\
  accelerator:
    type: L4
"""


def manifest(spec: str = "", metadata: str = "", name: str = "parity") -> str:
    return (
        "apiVersion: inference.llmops.dev/v1alpha1\n"
        "kind: LLMDeployment\n"
        f"metadata:\n  name: {name}\n{metadata}"
        f"spec:\n{MODEL if 'model:' not in spec else ''}"
        f"{ACCELERATOR if 'accelerator:' not in spec else ''}{spec}"
    )


def model(extra: str) -> str:
    return MODEL + extra


def resources(requests: str) -> str:
    return f"  server:\n    resources:\n      requests:\n{requests}"


CASES: list[tuple[str, str]] = [
    ("base", manifest()),
    ("revision-null", manifest(model("    revision: null\n"))),
    ("optimization-null", manifest("  optimization: null\n")),
    ("budget-null", manifest("  autoscaling:\n    budget: null\n")),
    ("replicas-null", manifest("  replicas: null\n")),
    ("context-whole-float", manifest(model("    maxContextLength: 8192.0\n"))),
    ("context-fraction", manifest(model("    maxContextLength: 8192.5\n"))),
    ("context-string", manifest(model('    maxContextLength: "8192"\n'))),
    ("context-hex", manifest(model("    maxContextLength: 0x2000\n"))),
    ("context-exponent", manifest(model("    maxContextLength: 8e3\n"))),
    ("context-octal-0o", manifest(model("    maxContextLength: 0o20000\n"))),
    ("context-underscores", manifest(model("    maxContextLength: 8_192\n"))),
    ("budget-exponent", manifest("  autoscaling:\n    budget:\n      maxDollarsPerHour: 1e2\n")),
    ("replicas-whole-floats", manifest("  replicas:\n    min: 1.0\n    max: 2.0\n")),
    ("cpu-whole-float", manifest(resources("        cpu: 2.0\n"))),
    ("cpu-fraction-number", manifest(resources("        cpu: 2.5\n"))),
    ("cpu-string", manifest(resources('        cpu: "2.5"\n'))),
    ("memory-trailing-newline", manifest(resources('        memory: "8Gi\\n"\n'))),
    ("memory-bad", manifest(resources('        memory: "eight"\n'))),
    ("uri-nbsp", manifest('  model:\n    uri: "hf://meta-llama/Llama\\u00a03"\n'
                          "    parameterCount: 8B\n")),
    ("uri-em-space-end", manifest('  model:\n    uri: "s3://bucket/path\\u2003"\n'
                                  "    parameterCount: 8B\n")),
    ("uri-trailing-newline", manifest('  model:\n    uri: "hf://meta-llama/Llama-3\\n"\n'
                                      "    parameterCount: 8B\n")),
    ("served-name-trailing-newline", manifest(model('    servedName: "chat\\n"\n'))),
    ("bool-yes", manifest("  optimization:\n    cache:\n      prefix: yes\n")),
    ("bool-string", manifest('  optimization:\n    cache:\n      prefix: "true"\n')),
    ("null-tilde", manifest(model("    revision: ~\n"))),
    ("duplicate-key", manifest(model("    maxContextLength: 2048\n    maxContextLength: 4096\n"))),
    ("budget-infinite", manifest("  autoscaling:\n    budget:\n      maxDollarsPerHour: .inf\n")),
    ("memory-integer", manifest(resources("        memory: 8589934592\n"))),
    ("env-duplicate", manifest("  server:\n    env:\n    - name: A\n      value: x\n"
                               "    - name: A\n      value: y\n")),
    ("metadata-unknown-field", manifest(metadata="  colour: blue\n")),
    ("metadata-labels-ok", manifest(metadata="  labels:\n    example.com/team: ml\n")),
    ("label-key-invalid", manifest(metadata='  labels:\n    "bad key!": x\n')),
    ("label-key-prefix-invalid", manifest(metadata="  labels:\n    Example_COM/team: ml\n")),
    ("label-value-invalid", manifest(metadata='  labels:\n    team: "a b"\n')),
    ("label-value-64", manifest(metadata=f"  labels:\n    team: {'a' * 64}\n")),
    ("annotation-key-invalid", manifest(metadata='  annotations:\n    "a b": x\n')),
    ("annotation-value-free", manifest(metadata='  annotations:\n    note: "any text: ok"\n')),
    ("spec-unknown-field", manifest(model("    colour: blue\n"))),
    ("quantization-enum", manifest("  optimization:\n    quantization: int3\n")),
    ("replicas-min-above-max", manifest("  replicas:\n    min: 3\n    max: 2\n")),
    ("budget-zero", manifest("  autoscaling:\n    budget:\n      maxDollarsPerHour: 0\n")),
    ("name-dotted", manifest(name="llama-3.1-8b")),
    ("name-64", manifest(name="a" * 64)),
    ("name-upper", manifest(name="Llama")),
    ("missing-model", manifest("  model: null\n")),
]  # fmt: skip


def server_admits(kube: Kube, namespace: str, text: str) -> tuple[bool, str]:
    path = kube.path("inference.llmops.dev/v1alpha1", "LLMDeployment", namespace)
    response = kube.http.post(
        path,
        content=text.encode(),
        headers={"Content-Type": "application/yaml"},
        params={"dryRun": "All", "fieldValidation": "Strict"},
    )
    return response.status_code < 400, response.text[:300]


@pytest.mark.parametrize(("case", "text"), CASES, ids=[c for c, _ in CASES])
def test_validate_agrees_with_the_api_server(
    kube: Kube, namespace: str, tmp_path: Path, case: str, text: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    admitted, answer = server_admits(kube, namespace, text.replace("  name: ",
                                     f"  namespace: {namespace}\n  name: ", 1))  # fmt: skip
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    valid = main(["validate", "-f", str(path)]) == 0
    printed = capsys.readouterr().out
    assert valid == admitted, f"server {'admits' if admitted else 'refuses'}: {answer}\n{printed}"


def test_validate_server_dry_runs_in_the_kubeconfigs_cluster(
    kube: Kube, namespace: str, control_plane: ControlPlane, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(manifest(metadata=f"  namespace: {namespace}\n"))
    bad.write_text(manifest("  replicas:\n    min: 3\n    max: 2\n",
                            metadata=f"  namespace: {namespace}\n"))  # fmt: skip

    assert main(["validate", "--server", "-f", str(good)]) == 0
    assert f"{good}: API server (dry-run): admitted" in capsys.readouterr().out
    assert main(["validate", "--server", "-f", str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"{bad}: API server (dry-run): " in out and "replicas.min must not exceed" in out
    assert kube.list("inference.llmops.dev/v1alpha1", "LLMDeployment", namespace) == []


def test_validate_server_without_a_cluster_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(manifest())
    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text(kubeconfig("https://127.0.0.1:1", tmp_path / "none.crt", {"token": "x"}))
    for config in (nowhere, tmp_path / "missing.kubeconfig"):
        monkeypatch.setenv("KUBECONFIG", str(config))
        assert main(["validate", "--server", "-f", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("llmops validate --server: cluster unreachable")
