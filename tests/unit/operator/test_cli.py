"""`llmops` as a user runs it: exit codes, messages on stdout, JSON for scripts."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_operator.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


def _write(tmp_path: Path, *docs: dict[str, Any]) -> str:
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def test_validate_examples_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for p in EXAMPLES for a in ("-f", str(p))]
    # The CPU examples serve file:///models/...: allowed as the chart's default values allow it.
    assert main(["validate", "--allowed-host-paths", "/models", *args]) == 0
    assert capsys.readouterr().out.count(": valid (") == len(EXAMPLES)


def test_validate_invalid_exits_2_and_names_fields(
    tmp_path: Path, manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest["spec"]["replicas"] = {"min": 9, "max": 2}
    good = json.loads(json.dumps(manifest))
    good["spec"]["replicas"] = {"min": 1, "max": 2}
    path = _write(tmp_path, good, manifest)
    assert main(["validate", "-f", path]) == 2
    out = capsys.readouterr().out
    assert f"{path}: valid (chat)" in out
    assert f"{path}#1: invalid" in out
    assert "spec.replicas.min: replicas.min must not exceed replicas.max (fix: lower min" in out


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """A bad input file: exit 2, nothing on stdout, one line on stderr saying what is wrong."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err


def test_validate_unreadable_file_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    _refused(capsys, ["validate", "-f", str(missing)], f"{missing}: No such file or directory")


COMMANDS = ["validate", "cost", "render", "up"]  # a bad file ends each before it starts


@pytest.mark.parametrize("command", COMMANDS)
def test_empty_file_is_refused(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for text in ("", "# only a comment\n---\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        _refused(capsys, [command, "-f", str(path)], f"no LLMDeployment in {path}")


@pytest.mark.parametrize("command", COMMANDS)
def test_binary_file_is_refused(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "image.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    _refused(capsys, [command, "-f", str(path)], "not UTF-8 text (byte 0x89 at offset 0)")
    path.write_bytes(b"apiVersion: \x00\x01\x02\n")  # valid UTF-8, not YAML text
    _refused(capsys, [command, "-f", str(path)], "character #x0000 at offset 12")


@pytest.mark.parametrize("command", COMMANDS)
def test_non_utf8_file_is_refused(
    tmp_path: Path, manifest: dict[str, Any], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest["metadata"]["annotations"] = {"owner": "J\u00e9r\u00f4me"}
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(manifest, allow_unicode=True).encode("latin-1"))
    _refused(capsys, [command, "-f", str(path)], f"{path}: not UTF-8 text (byte 0xe9 at offset")


@pytest.mark.parametrize("command", COMMANDS)
def test_deeply_nested_yaml_is_refused(
    tmp_path: Path, manifest: dict[str, Any], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest["spec"]["server"] = {"podTemplate": "DEEP"}
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(manifest).replace("DEEP", "[" * 10_000 + "]" * 10_000))
    _refused(capsys, [command, "-f", str(path)], "nested deeper than 100 levels")


def _billion_laughs() -> str:
    """A podTemplate whose aliases expand to 10**9 nodes, in a few hundred bytes."""
    laughs = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 9):
        laughs.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * 10) + "]")
    return "{" + ", ".join(laughs) + "}"


@pytest.mark.parametrize("command", COMMANDS)
def test_alias_bomb_in_pod_template_is_refused(
    tmp_path: Path, manifest: dict[str, Any], command: str
) -> None:
    """In a subprocess with a memory cap and a timeout, so a regression fails instead of
    hanging the run or exhausting the machine."""
    manifest["spec"]["server"] = {"podTemplate": "BOMB"}
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump(manifest).replace("BOMB", _billion_laughs()))

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "llm_operator.cli", command, "-f", str(path)],
        capture_output=True, text=True, timeout=120, preexec_fn=cap_memory, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == "", done.stderr[-2000:]
    [line] = done.stderr.splitlines()
    assert line.startswith(f"llmops {command}: {path}: line ")
    assert line.endswith(": aliases expand the document by more than 10,000 nodes")


def test_aliases_and_merge_keys_within_bounds_are_read(
    tmp_path: Path, manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """kubectl reads anchors, aliases and `<<` merge keys; so does llmops, up to its bounds."""
    manifest["spec"]["server"] = {"podTemplate": "SHARED"}
    path = tmp_path / "aliases.yaml"
    text = yaml.safe_dump(manifest).replace(
        "SHARED",
        "{metadata: {labels: &labels {team: a, tier: b}, annotations: {<<: *labels, tier: c}}}",
    )
    path.write_text(text)
    assert main(["render", "-f", str(path)]) == 0
    assert "tier: c" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["validate", "cost", "render"])
def test_multi_document_file_with_a_bad_second_prints_nothing(
    tmp_path: Path, manifest: dict[str, Any], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = json.loads(json.dumps(manifest))
    bad["metadata"]["name"] = "second"
    bad["spec"]["replicas"] = {"min": 9, "max": 2}
    path = _write(tmp_path, manifest, bad)
    assert main([command, "-f", path]) == 2
    captured = capsys.readouterr()
    if command == "validate":  # its report is its output: the first valid, the second not
        assert f"{path}: valid (chat)" in captured.out and f"{path}#1: invalid" in captured.out
    else:  # all or nothing, so `llmops render -f x | kubectl apply -f -` applies nothing
        assert captured.out == ""
        assert f"{path}#1: invalid, run `llmops validate" in captured.err


@pytest.mark.parametrize("command", COMMANDS)
def test_duplicate_keys_are_refused(
    tmp_path: Path, manifest: dict[str, Any], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "twice.yaml"
    text = yaml.safe_dump(manifest)
    path.write_text(text.replace("spec:\n", "spec:\n  replicas: {min: 1, max: 9}\n", 1))
    _refused(capsys, [command, "-f", str(path)], "key 'replicas' already set in map")


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        ("accelerators: [{name: L4\n", "line 2, column 1: expected ',' or '}'"),
        ("- name: L4\n", "a catalog is a mapping with one key, accelerators (a list)"),
        ("accelerator: []\n", "a catalog is a mapping with one key, accelerators (a list)"),
        ("accelerators: {name: L4}\n", "accelerators: must be a list"),
        ("accelerators: [L4]\n", "accelerators[0]: must be a mapping with a name"),
        (
            "accelerators: [{name: L4, prices: {onDemand: cheap}}]\n",
            "accelerators[0] (L4): prices.onDemand: Input should be a valid number",
        ),
        ("accelerators: []\n---\naccelerators: []\n", "a catalog is one document, not 2"),
        ("a: 1\na: 2\n", "line 2, column 1: key 'a' already set in map"),
    ],
)
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_catalog_is_refused(
    tmp_path: Path, manifest: dict[str, Any], command: str, catalog: str, message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    override = tmp_path / "catalog.yaml"
    override.write_text(catalog)
    argv = [command, "-f", _write(tmp_path, manifest), "--catalog", str(override)]
    _refused(capsys, argv, f"llmops {command}: {override}: {message}")


def test_bad_catalog_bytes_are_refused(
    tmp_path: Path, manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    override = tmp_path / "catalog.yaml"
    override.write_bytes(b"\xff\xfe\x00a")
    argv = ["cost", "-f", _write(tmp_path, manifest), "--catalog", str(override)]
    _refused(capsys, argv, f"{override}: not UTF-8 text (byte 0xff at offset 0)")


def test_cost_json(
    tmp_path: Path, manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cost", "-f", _write(tmp_path, manifest), "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report[0]["name"] == "chat"
    assert [o["accelerator"] for o in report[0]["options"]] == ["L4", "A10G"]


def test_cost_table_uses_catalog_override(
    tmp_path: Path, manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    override = tmp_path / "catalog.yaml"
    override.write_text("accelerators: [{name: L4, prices: {onDemand: 2.5, spot: 1.0}}]")
    assert main(["cost", "-f", _write(tmp_path, manifest), "--catalog", str(override)]) == 0
    out = capsys.readouterr().out
    assert "1x L4" in out and "2.50" in out and "10.00" in out  # 4 replicas x $2.50


def test_crd_command_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["kind"] == "CustomResourceDefinition"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [1, *a]\n", "line 1, column 11: alias *a is inside the node it names"),
        (
            "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 120)),
            "line 100, column 6: aliases nest the document deeper than 100 levels",
        ),
        ("a: " + "x" * (1 << 20) + "\n", "larger than 1 MiB"),
    ],
    ids=["recursive-alias", "alias-chain", "too-large"],
)
def test_reader_bounds(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bounded.yaml"
    path.write_text(text)
    _refused(capsys, ["validate", "-f", str(path)], f"llmops validate: {path}: {message}")


def test_validate_checks_routes_and_tenants_by_their_own_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = [
        *sorted(Path("examples/routes").glob("*.yaml")),
        Path("examples/tenants/support-bot.yaml"),
    ]
    args = [a for p in examples for a in ("-f", str(p))]
    assert main(["validate", "--allowed-host-paths", "/models", *args]) == 0
    out = capsys.readouterr().out
    assert "valid (LLMRoute smollm2-auto)" in out and "valid (LLMTenant support-bot)" in out
    route = {
        "apiVersion": "inference.llmops.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "r", "namespace": "chat"},
        "spec": {"model": "m", "targets": [{"deployment": "a"}], "fallbak": ["b"]},
    }
    assert main(["validate", "-f", _write(tmp_path, route)]) == 2
    out = capsys.readouterr().out
    assert ": invalid" in out
    assert "spec.fallbak: unknown field (fix: did you mean fallback?)" in out
