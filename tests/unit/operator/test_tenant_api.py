"""LLMTenant (issue 23): the pydantic models, the generated CRD and the examples.

The same table of good and bad manifests (tests/support/tenant_manifests.py) goes to the real
API server in tests/integration/kube/test_tenant_crd.py.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from tenant_manifests import BAD, GOOD

from llm_operator.api.tenant import API_KEY_DATA_KEY, TENANT_LABEL, LLMTenant, LLMTenantSpec
from llm_operator.api.tenant_crd import tenant_crd, tenant_crd_yaml
from llm_operator.cli import main

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "crds" / "inference.llmops.dev_llmtenants.yaml"
CHART_COPY = ROOT / "charts" / "llm-operator" / "files" / "crds" / COMMITTED.name
EXAMPLES = sorted((ROOT / "examples" / "tenants").glob("*.yaml"))


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = tenant_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_and_chart_copy_are_not_stale() -> None:
    assert COMMITTED.read_text() == tenant_crd_yaml(), "crds/ is stale: run `make crds`"
    assert CHART_COPY.read_text() == tenant_crd_yaml(), "the chart's copy is stale: `make crds`"


def test_crd_is_a_valid_apiextensions_v1_object() -> None:
    for version in ("1.29", "1.33"):
        kubernetes_validate.validate(yaml.safe_load(COMMITTED.read_text()), version, strict=True)


def test_crd_names_scope_and_columns() -> None:
    body = tenant_crd()["spec"]
    assert body["group"] == "inference.llmops.dev" and body["scope"] == "Namespaced"
    assert body["names"]["kind"] == "LLMTenant" and body["names"]["plural"] == "llmtenants"
    assert body["names"]["shortNames"] == ["llmt"]
    (version,) = body["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert "scale" not in version["subresources"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Budget"] == ".spec.budget.dollars"
    assert columns["Spent"] == ".status.spend.dollars"


def test_llmops_crd_kind_prints_the_tenant_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd", "--kind", "LLMTenant"]) == 0
    assert capsys.readouterr().out == tenant_crd_yaml()


def test_spec_defaults_in_the_crd_equal_the_models() -> None:
    """An omitted spec is stored as the API server's defaults: those of LLMTenantSpec()."""
    spec = _schema()["properties"]["spec"]
    parsed = LLMTenantSpec().model_dump(by_alias=True, exclude_none=True)
    assert spec["default"] == {k: v for k, v in parsed.items() if v != []}
    assert spec["properties"]["models"]["x-kubernetes-list-type"] == "set"
    dollars = spec["properties"]["budget"]["properties"]["dollars"]
    assert dollars["x-kubernetes-int-or-string"] is True and dollars["pattern"]


@pytest.mark.parametrize(("case", "manifest"), GOOD, ids=[c for c, _ in GOOD])
def test_good_manifests_parse(case: str, manifest: dict[str, Any]) -> None:
    LLMTenant.from_manifest(manifest)


@pytest.mark.parametrize(("case", "manifest", "field"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_manifests_are_refused_naming_the_field(
    case: str, manifest: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        LLMTenant.from_manifest(manifest)
    leaf = field.rsplit(".", 1)[-1]
    where = " ".join(".".join(map(str, e["loc"])) + " " + e["msg"] for e in refused.value.errors())
    assert leaf in where, where


def test_defaults_and_model_access() -> None:
    spec = LLMTenant.from_manifest({"metadata": {"name": "t"}}).spec
    assert (spec.weight, spec.priority, spec.budget) == (1, "normal", None)
    assert spec.limits.requests_per_minute is None and spec.limits.tokens_per_minute is None
    assert spec.allows("anything")
    only_chat = LLMTenantSpec.model_validate({"models": ["chat"]})
    assert only_chat.allows("chat") and not only_chat.allows("code")


def test_budget_amount_is_exact() -> None:
    cents = LLMTenantSpec.model_validate({"budget": {"dollars": "12.50", "period": "month"}})
    whole = LLMTenantSpec.model_validate({"budget": {"dollars": 25, "period": "day"}})
    assert cents.budget is not None and cents.budget.amount == Decimal("12.50")
    assert whole.budget is not None and whole.budget.amount == Decimal(25)


def test_examples_are_tenants_and_a_labelled_key_secret() -> None:
    docs = [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]
    tenants = [LLMTenant.from_manifest(d) for d in docs if d["kind"] == "LLMTenant"]
    assert {t.metadata.name for t in tenants} == {"support-bot", "nightly-evals"}
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert secret["metadata"]["labels"][TENANT_LABEL] == "support-bot"
    assert "FAKE" in secret["stringData"][API_KEY_DATA_KEY]  # an obviously fake key
    assert {d["metadata"]["namespace"] for d in docs} == {"chat"}
