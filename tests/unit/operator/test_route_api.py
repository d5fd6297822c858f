"""LLMRoute (issue 23, routes): the pydantic models, the generated CRD and the examples.

The same table of good and bad manifests (tests/support/route_manifests.py) goes to the real
API server in tests/integration/kube/test_route_crd.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from route_manifests import BAD, GOOD

from llm_operator.api import LLMDeployment
from llm_operator.api.route import LLMRoute, LLMRouteSpec, pattern_error
from llm_operator.api.route_crd import route_crd, route_crd_yaml
from llm_operator.cli import main

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "crds" / "inference.llmops.dev_llmroutes.yaml"
CHART_COPY = ROOT / "charts" / "llm-operator" / "files" / "crds" / COMMITTED.name
EXAMPLES = sorted((ROOT / "examples" / "routes").glob("*.yaml"))


def _spec_schema() -> dict[str, Any]:
    root = route_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec: dict[str, Any] = root["properties"]["spec"]
    return spec


def test_committed_crd_and_chart_copy_are_not_stale() -> None:
    assert COMMITTED.read_text() == route_crd_yaml(), "crds/ is stale: run `make crds`"
    assert CHART_COPY.read_text() == route_crd_yaml(), "the chart's copy is stale: `make crds`"


def test_crd_is_a_valid_apiextensions_v1_object() -> None:
    for version in ("1.29", "1.33"):
        kubernetes_validate.validate(yaml.safe_load(COMMITTED.read_text()), version, strict=True)


def test_crd_names_scope_and_columns() -> None:
    body = route_crd()["spec"]
    assert body["group"] == "inference.llmops.dev" and body["scope"] == "Namespaced"
    assert body["names"]["kind"] == "LLMRoute" and body["names"]["plural"] == "llmroutes"
    assert body["names"]["shortNames"] == ["llmr"]
    (version,) = body["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Model"] == ".spec.model"
    assert columns["Escalation"] == ".status.lastHour.escalationRate"


def test_llmops_crd_kind_prints_the_route_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd", "--kind", "LLMRoute"]) == 0
    assert capsys.readouterr().out == route_crd_yaml()


def test_gate_defaults_in_the_crd_equal_the_models() -> None:
    gate = _spec_schema()["properties"]["cascade"]["properties"]["gate"]
    parsed = LLMRouteSpec.model_validate({"model": "m", "cascade": {"steps": ["a", "b"]}})
    assert parsed.cascade is not None
    assert gate["default"] == parsed.cascade.gate.model_dump(by_alias=True, exclude_none=True)
    weight = _spec_schema()["properties"]["targets"]["items"]["properties"]["weight"]
    assert (weight["default"], weight["minimum"], weight["maximum"]) == (1, 1, 1000)


@pytest.mark.parametrize(("case", "manifest"), GOOD, ids=[c for c, _ in GOOD])
def test_good_manifests_parse(case: str, manifest: dict[str, Any]) -> None:
    LLMRoute.from_manifest(manifest)


@pytest.mark.parametrize(("case", "manifest", "field"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_manifests_are_refused_naming_the_field(
    case: str, manifest: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        LLMRoute.from_manifest(manifest)
    leaf = field.rsplit(".", 1)[-1]
    where = " ".join(".".join(map(str, e["loc"])) + " " + e["msg"] for e in refused.value.errors())
    assert leaf in where, where


def test_deployments_in_order_primaries_then_fallbacks() -> None:
    split = LLMRouteSpec.model_validate(
        {"model": "m", "targets": [{"deployment": "b"}, {"deployment": "a", "weight": 3}],
         "fallback": ["z", "y"]}
    )  # fmt: skip
    assert split.primary_deployments == ("b", "a") and split.deployments == ("b", "a", "z", "y")
    assert [t.weight for t in split.targets] == [1, 3]
    chain = LLMRouteSpec.model_validate({"model": "m", "cascade": {"steps": ["s", "l"]}})
    assert chain.deployments == ("s", "l")
    assert chain.cascade is not None and chain.cascade.gate.min_mean_token_logprob is None


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [("(?i)i don't know", True), ("^\\s*$", True), ("a{2,3}b|c", True), ("(?P<x>a)", True),
     ("(", False), ("a(?!b)", False), ("(?<=a)b", False), ("(x)\\1", False),
     ("(?P<x>a)(?P=x)", False)],
)  # fmt: skip
def test_reject_pattern_is_re2_compatible(pattern: str, ok: bool) -> None:
    assert (pattern_error(pattern) is None) == ok


def test_examples_are_routes_and_the_cascade_deployments() -> None:
    docs = [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]
    routes = {r.metadata.name: r for r in (LLMRoute.from_manifest(d) for d in docs
                                            if d["kind"] == "LLMRoute")}  # fmt: skip
    assert set(routes) == {"assistant", "support", "smollm2-auto"}
    assert [t.weight for t in routes["assistant"].spec.targets] == [90, 10]
    assert routes["support"].spec.fallback
    cascade = routes["smollm2-auto"].spec.cascade
    assert cascade is not None and cascade.gate.min_mean_token_logprob == -1.2
    deployments = {
        d.metadata.name: d
        for d in (
            LLMDeployment.from_manifest(doc) for doc in docs if doc["kind"] == "LLMDeployment"
        )
    }
    assert set(deployments) == set(cascade.steps)  # the cascade example brings its targets
    quantization = [deployments[s].spec.optimization.quantization for s in cascade.steps]
    assert quantization == ["int4", "none"]
