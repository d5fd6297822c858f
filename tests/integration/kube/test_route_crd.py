"""The generated LLMRoute CRD on the real API server (issue 23): it is installed with the others,
`kubectl apply -f examples/routes/` works, and the table of bad manifests pydantic refuses
(tests/support/route_manifests.py) is refused here too, by the CRD's schema and CEL (RE2 for
rejectPattern), naming the same field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_client import Kube, KubeError
from route_manifests import BAD, GOOD

from llm_operator.api.route import LLMRoute

ROOT = Path(__file__).resolve().parents[3]
API_VERSION = "inference.llmops.dev/v1alpha1"


def _in(namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    placed = copy.deepcopy(manifest)
    placed["metadata"]["namespace"] = namespace
    return placed


def test_served_as_llmroutes_with_short_name(kube: Kube) -> None:
    resources = kube.request("GET", f"/apis/{API_VERSION}")["resources"]
    (served,) = [r for r in resources if r["name"] == "llmroutes"]
    assert served["kind"] == "LLMRoute" and served["namespaced"] is True
    assert served["shortNames"] == ["llmr"] and "llmops" in served["categories"]
    assert any(r["name"] == "llmroutes/status" for r in resources)


def test_examples_apply_and_read_back(kube: Kube, namespace: str) -> None:
    docs = [
        _in(namespace, doc)
        for path in sorted((ROOT / "examples" / "routes").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    assert {d["kind"] for d in docs} == {"LLMRoute", "LLMDeployment"}  # the cascade's pair
    for doc in docs:
        kube.apply(doc)
    for doc in (d for d in docs if d["kind"] == "LLMRoute"):
        stored = kube.get(API_VERSION, "LLMRoute", doc["metadata"]["name"], namespace)
        assert stored is not None
        parsed = LLMRoute.from_manifest(stored).spec
        assert parsed == LLMRoute.from_manifest(doc).spec  # defaults agree


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
            kube.path(API_VERSION, "LLMRoute", namespace),
            _in(namespace, manifest),
            params={"dryRun": "All", "fieldValidation": "Strict"},
        )
    assert refused.value.status in (400, 422), refused.value
    assert field.rsplit(".", 1)[-1] in refused.value.message, refused.value.message
