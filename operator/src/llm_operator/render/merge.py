"""A small strategic merge patch, enough for `server.podTemplate` (applied last).

Maps merge key by key; `null` deletes a key; `{"$patch": "replace"}` in a map replaces it whole.
These lists merge by their Kubernetes patch merge key, an item with `"$patch": "delete"` removes
its match, and an item with a new key is appended:
  containers, initContainers, ephemeralContainers, env, volumes, imagePullSecrets: name
  volumeMounts: mountPath;  ports: containerPort
Every other list (args, tolerations, ...) is replaced whole, as Kubernetes does for most.
Not supported: $retainKeys, $setElementOrder, $deleteFromPrimitiveList, and merge keys of
lists outside this table (e.g. topologySpreadConstraints) — those lists are replaced.
"""

from __future__ import annotations

import copy
from typing import Any

LIST_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
_DIRECTIVE = "$patch"


def strategic_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` applied; neither argument is modified."""
    if patch.get(_DIRECTIVE) == "replace":
        replaced: dict[str, Any] = _clean(patch)
        return replaced
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if key == _DIRECTIVE:
            continue
        current = out.get(key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            out[key] = strategic_merge(current, value)
        elif isinstance(value, list) and key in LIST_MERGE_KEYS and isinstance(current, list):
            out[key] = _merge_list(current, value, LIST_MERGE_KEYS[key])
        else:
            out[key] = _clean(value)
    return out


def _merge_list(base: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    out = copy.deepcopy(base)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            out.append(_clean(item))
            continue
        index = next(
            (
                i
                for i, old in enumerate(out)
                if isinstance(old, dict) and old.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if index is not None:
                del out[index]
        elif index is None:
            out.append(_clean(item))
        else:
            out[index] = strategic_merge(out[index], item)
    return out


def _clean(value: Any) -> Any:
    """A copy without patch directives (for values that land with nothing to merge into)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k != _DIRECTIVE and v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
