"""The table of child kinds covers everything the renderer can produce (every option on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llm_operator.api.resource import LLMDeployment
from llm_operator.catalog import default_catalog
from llm_operator.child_kinds import CHILD_KINDS, PLURALS, WATCHED
from llm_operator.render import RenderSettings, desired_objects
from llm_operator.resolve import resolve

ROOT = Path(__file__).resolve().parents[3]


def example() -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "examples" / "l4-int8-chat.yaml").read_text())
    manifest: dict[str, Any] = next(d for d in docs if d and d.get("kind") == "LLMDeployment")
    manifest["spec"].setdefault("autoscaling", {})["mode"] = "keda"
    manifest["spec"]["inferencePool"] = {"endpointPicker": "chat-epp"}
    return manifest


def test_every_rendered_kind_is_in_the_table_and_every_row_is_rendered() -> None:
    resource = LLMDeployment.model_validate(example())
    settings = RenderSettings(service_monitor=True, network_policy=True)
    objects = desired_objects(resource, resolve(resource.spec, default_catalog()), settings)
    rendered = {(o["apiVersion"], o["kind"]) for o in objects}
    assert rendered == {(k.api_version, k.kind) for k in CHILD_KINDS}


def test_plurals_cover_what_is_watched() -> None:
    assert all(PLURALS[(k.api_version, k.kind)] == k.plural for k in WATCHED)
    assert len({k.plural for k in WATCHED}) == len(WATCHED)  # kopf handler ids are per plural
