"""What this process last applied and the status it last wrote, per LLMDeployment.

Watch events lag behind our own writes; without this a reconcile woken by the Deployment's
event could re-apply the ConfigMap whose event has not arrived yet, or re-send an Event. A
child's DELETED event drops its entry, so a child deleted by hand is re-created. A fresh
process starts empty and reads the truth from the indices, which kopf fills before any handler
runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from llm_operator.plan import ChildSummary, Plan
from llm_operator.plan.children import manifest_hash
from llm_operator.plan.observed import APPLIED_HASH_ANNOTATION

Key = tuple[str, str]  # (namespace, name) of an LLMDeployment
ChildKey = tuple[str, str]  # (kind, name) of a child


def stamp_of(manifest: Mapping[str, Any]) -> str:
    """The applied hash a rendered child carries (or would carry)."""
    annotations = manifest["metadata"].get("annotations") or {}
    return str(annotations.get(APPLIED_HASH_ANNOTATION) or manifest_hash(manifest))


@dataclass
class WriteCache:
    # (kind, name) -> (apiVersion, applied hash; None = we deleted it)
    applied: dict[Key, dict[ChildKey, tuple[str, str | None]]] = field(default_factory=dict)
    statuses: dict[Key, dict[str, Any]] = field(default_factory=dict)
    gone: dict[Key, set[ChildKey]] = field(default_factory=dict)  # deleted meanwhile
    uids: dict[Key, str] = field(default_factory=dict)  # a new object may reuse a name
    listed: set[Key] = field(default_factory=set)  # children read from the API server once

    def read_through(self, key: Key) -> None:
        self.listed.add(key)

    def forget(self, key: Key) -> None:
        for table in (self.applied, self.statuses, self.gone, self.uids):
            table.pop(key, None)
        self.listed.discard(key)

    def uid_changed(self, key: Key, uid: str) -> bool:
        """True when the name now belongs to another object than the one we wrote for."""
        return self.uids.setdefault(key, uid) != uid

    def knows(self, key: Key) -> bool:
        """Whether this process applied, listed or saw deleted any child of `key`."""
        return bool(self.applied.get(key) or self.gone.get(key)) or key in self.listed

    def child_gone(self, key: Key, kind: str, name: str) -> None:
        """A child's DELETED event: forget it (also if a reconcile in flight applied it)."""
        self.applied.get(key, {}).pop((kind, name), None)
        self.gone.setdefault(key, set()).add((kind, name))

    def overlay(
        self, key: Key, children: dict[ChildKey, ChildSummary]
    ) -> dict[ChildKey, ChildSummary]:
        """The indexed children, corrected by what we applied or deleted since."""
        for (kind, name), (api_version, digest) in self.applied.get(key, {}).items():
            if digest is None:
                children.pop((kind, name), None)
            elif (kind, name) not in children:
                children[(kind, name)] = ChildSummary(api_version, kind, name, digest)
            else:
                children[(kind, name)] = replace(children[(kind, name)], applied_hash=digest)
        return children

    def status(self, key: Key) -> dict[str, Any] | None:
        return self.statuses.get(key)

    def remember_status(self, key: Key, status: dict[str, Any] | None) -> None:
        if status is not None:
            self.statuses[key] = status

    def remember(self, key: Key, plan: Plan) -> None:
        memory = self.applied.setdefault(key, {})
        gone = self.gone.pop(key, set())
        for manifest in plan.apply:
            child = (manifest["kind"], manifest["metadata"]["name"])
            if child in gone:
                continue  # deleted while we applied it: let the index say what exists
            memory[child] = (manifest["apiVersion"], stamp_of(manifest))
        for ref in plan.delete:
            memory[(ref.kind, ref.name)] = (ref.api_version, None)
        self.remember_status(key, plan.status)
