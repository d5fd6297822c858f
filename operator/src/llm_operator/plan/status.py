"""The status an LLMDeployment should have, and the merge patch that gets it there. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from llm_operator.api.status import LLMDeploymentStatus


def parse_status(raw: Any) -> LLMDeploymentStatus:
    """The previous status; an unreadable one (hand-edited, older operator) counts as empty."""
    if not isinstance(raw, dict):
        return LLMDeploymentStatus()
    try:
        return LLMDeploymentStatus.model_validate(raw)
    except ValidationError:
        return LLMDeploymentStatus()


def status_dict(status: LLMDeploymentStatus) -> dict[str, Any]:
    dumped: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch turning `old` into `new` (None deletes; lists are replaced)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    return patch
