"""The children the API server refused (422/400), by applied hash, per LLMDeployment.

The same rendering is not sent again (it would be refused again: no hot retry); a spec change
renders other hashes and is tried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_operator.state.writes import Key, stamp_of


@dataclass
class Rejections:
    refused: dict[Key, set[str]] = field(default_factory=dict)

    def any_refused(self, key: Key, manifests: Iterable[Mapping[str, Any]]) -> bool:
        refused = self.refused.get(key, set())
        return any(stamp_of(m) in refused for m in manifests)

    def add(self, key: Key, manifests: Iterable[Mapping[str, Any]]) -> None:
        self.refused.setdefault(key, set()).update(stamp_of(m) for m in manifests)

    def forget(self, key: Key) -> None:
        self.refused.pop(key, None)
