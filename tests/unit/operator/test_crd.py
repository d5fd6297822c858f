"""The committed CRD is what the models generate, and the API server would accept it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from llm_operator.api.crd import crd, crd_yaml

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "crds" / "inference.llmops.dev_llmdeployments.yaml"


def test_committed_crd_is_not_stale() -> None:
    assert COMMITTED.read_text() == crd_yaml(), "crds/ is stale: run `make crds` and commit"


def test_crd_is_a_valid_apiextensions_v1_object() -> None:
    for version in ("1.29", "1.33"):
        kubernetes_validate.validate(yaml.safe_load(COMMITTED.read_text()), version, strict=True)


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        free = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert "type" in node or free, f"{path} has no type"
        assert "$ref" not in node and "$defs" not in node, path
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"] and rule["rule"], path


def test_defaults_enums_and_bounds_reach_the_schema() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    optimization = spec["properties"]["optimization"]
    # The whole block's default carries its inner defaults (the API server checks each
    # default against the node's CEL rules; `{}` fails them).
    assert optimization["default"]["quantization"] == "auto"
    assert optimization["default"]["batching"] == optimization["properties"]["batching"]["default"]
    assert set(spec["properties"]["replicas"]["default"]) == {"min", "max", "desired"}
    assert optimization["properties"]["quantization"]["enum"] == [
        "auto", "none", "int8", "int4", "fp8"
    ]  # fmt: skip
    assert optimization["properties"]["quantization"]["default"] == "auto"
    budget = spec["properties"]["autoscaling"]["properties"]["budget"]
    assert "default" not in budget  # optional object with a required field stays absent
    amount = budget["properties"]["maxDollarsPerHour"]
    assert amount["minimum"] == 0 and amount["exclusiveMinimum"] is True
    assert "H100-80GB" in spec["properties"]["accelerator"]["properties"]["type"]["enum"]


def test_subresources_names_and_columns() -> None:
    body = crd()["spec"]
    version = body["versions"][0]
    assert body["names"]["shortNames"] == ["llmd"]
    assert "llmops" in body["names"]["categories"]
    assert version["subresources"]["status"] == {}
    scale = version["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.replicas.desired"
    assert scale["statusReplicasPath"] == ".status.replicas"
    assert scale["labelSelectorPath"] == ".status.selector"
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Model", "GPU", "Quant", "Ready", "Desired", "$/h", "Status", "Age"]
    # Every printer column and scale path points at a field the schema has.
    schema = version["schema"]["openAPIV3Schema"]
    paths = {p for p, _ in _walk(schema)}
    for json_path in [c["jsonPath"] for c in version["additionalPrinterColumns"][:-1]] + [
        scale["specReplicasPath"],
        scale["statusReplicasPath"],
        scale["labelSelectorPath"],
    ]:
        assert json_path in paths, json_path


def test_committed_field_reference_is_not_stale() -> None:
    from llm_operator.api.reference import reference_markdown

    committed = (ROOT / "docs" / "api-reference.md").read_text()
    assert committed == reference_markdown(), "docs/api-reference.md is stale: run `make crds`"
