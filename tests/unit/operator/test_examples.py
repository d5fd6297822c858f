"""Every example is valid in both layers, and both layers default it identically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_operator.api.admission import admission_errors, apply_defaults
from llm_operator.api.crd import openapi_schema
from llm_operator.validation import validate_manifest

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


def test_there_are_the_three_promised_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"cpu-tiny.yaml", "l4-int8-chat.yaml", "h100-fp8-70b.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    assert admission_errors(manifest) == []
    resource, problems = validate_manifest(manifest)
    assert problems == [] and resource is not None


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_crd_defaults_equal_model_defaults(path: Path) -> None:
    """What the API server stores is what the operator assumes, field for field."""
    manifest = yaml.safe_load(path.read_text())
    stored = apply_defaults(manifest, openapi_schema())["spec"]
    resource, _ = validate_manifest(manifest)
    assert resource is not None
    parsed = _drop_none(resource.spec.model_dump(by_alias=True))
    # Empty lists/maps the models default but the CRD leaves absent are the same thing.
    for block in ("server",):
        parsed[block] = {k: v for k, v in parsed[block].items() if v not in ([], {})}
        stored.setdefault(block, {})
    parsed["accelerator"] = {k: v for k, v in parsed["accelerator"].items() if v != []}
    stored_fallbacks = stored["accelerator"].get("fallbacks")
    if stored_fallbacks is not None:
        parsed["accelerator"]["fallbacks"] = [
            {k: v for k, v in f.items() if v is not None}
            for f in parsed["accelerator"]["fallbacks"]
        ]
    assert parsed == stored
