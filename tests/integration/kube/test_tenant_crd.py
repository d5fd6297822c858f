"""The generated LLMTenant CRD on the real API server (issue 23): it is installed with the
others, `kubectl apply -f examples/tenants/` works, omitted fields get the models' defaults, and
the table of bad manifests pydantic refuses (tests/support/tenant_manifests.py) is refused here
too, by the CRD's schema and CEL, naming the same field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_client import Kube, KubeError
from tenant_manifests import BAD, GOOD, tenant

from llm_operator.api.tenant import API_KEY_DATA_KEY, TENANT_LABEL, LLMTenant, LLMTenantSpec

ROOT = Path(__file__).resolve().parents[3]
API_VERSION = "inference.llmops.dev/v1alpha1"


def _in(namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    placed = copy.deepcopy(manifest)
    placed["metadata"]["namespace"] = namespace
    return placed


def test_served_as_llmtenants_with_short_name(kube: Kube) -> None:
    resources = kube.request("GET", f"/apis/{API_VERSION}")["resources"]
    (served,) = [r for r in resources if r["name"] == "llmtenants"]
    assert served["kind"] == "LLMTenant" and served["namespaced"] is True
    assert served["shortNames"] == ["llmt"] and "llmops" in served["categories"]


def test_examples_apply_and_read_back(kube: Kube, namespace: str) -> None:
    docs = [
        _in(namespace, doc)
        for path in sorted((ROOT / "examples" / "tenants").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    for doc in docs:
        kube.apply(doc)
    bot = kube.get(API_VERSION, "LLMTenant", "support-bot", namespace)
    evals = kube.get(API_VERSION, "LLMTenant", "nightly-evals", namespace)
    assert bot is not None and evals is not None
    assert LLMTenant.from_manifest(bot).spec.limits.requests_per_minute == 600
    stored = LLMTenant.from_manifest(evals).spec
    assert (stored.weight, stored.priority, stored.models) == (1, "low", [])  # defaulted
    keys = kube.list("v1", "Secret", namespace, selector=f"{TENANT_LABEL}=support-bot")
    (key,) = keys
    assert API_KEY_DATA_KEY in key["data"]


def test_omitted_spec_gets_the_models_defaults(kube: Kube, namespace: str) -> None:
    manifest = tenant("bare", namespace)
    del manifest["spec"]
    stored = kube.create(manifest)
    expected = LLMTenantSpec().model_dump(by_alias=True, exclude_none=True)
    assert stored["spec"] == {k: v for k, v in expected.items() if v != []}


@pytest.mark.parametrize(("case", "manifest"), GOOD, ids=[c for c, _ in GOOD])
def test_good_manifests_are_admitted(
    kube: Kube, namespace: str, case: str, manifest: dict[str, Any]
) -> None:
    kube.create(_in(namespace, manifest), dry_run=True)


@pytest.mark.parametrize(("case", "manifest", "field"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_manifests_are_refused_naming_the_field(
    kube: Kube, namespace: str, case: str, manifest: dict[str, Any], field: str
) -> None:
    with pytest.raises(KubeError) as refused:
        kube.request(
            "POST",
            kube.path(API_VERSION, "LLMTenant", namespace),
            _in(namespace, manifest),
            params={"dryRun": "All", "fieldValidation": "Strict"},
        )
    assert refused.value.status in (400, 422), refused.value
    assert field.rsplit(".", 1)[-1] in refused.value.message, refused.value.message
