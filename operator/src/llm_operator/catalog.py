"""The GPU catalog: what each accelerator type is, where it runs and what it costs.

Shipped defaults live in `catalog_defaults.yaml` (each price cites its source and date);
a cluster overrides or extends them with the same YAML in a ConfigMap (key `catalog.yaml`),
merged entry by entry on `name`. Pure: no Kubernetes client here.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

CPU = "cpu"
Capacity = Literal["on-demand", "spot", "spot-preferred"]


class _CatalogModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class NodeLabel(_CatalogModel):
    key: str
    value: str


class Prices(_CatalogModel):
    on_demand: float = Field(gt=0, description="USD per accelerator-hour, on-demand")
    spot: float = Field(gt=0, description="USD per accelerator-hour, spot (representative)")
    source: str
    as_of: str


class Accelerator(_CatalogModel):
    name: str
    vendor: str
    resource_name: str
    memory_gib: float = Field(ge=0)
    compute_capability: str
    fp8: bool
    int4: bool = True
    product_labels: tuple[str, ...] = ()
    cloud_labels: dict[str, NodeLabel] = Field(default_factory=dict)
    prices: Prices

    @property
    def is_cpu(self) -> bool:
        return self.name == CPU

    def dollars_per_hour(self, capacity: Capacity) -> float:
        """Price of one accelerator; spot-preferred is costed at the spot price it aims for."""
        return self.prices.on_demand if capacity == "on-demand" else self.prices.spot


class Catalog(_CatalogModel):
    accelerators: tuple[Accelerator, ...]

    def names(self) -> list[str]:
        return [a.name for a in self.accelerators]

    def get(self, name: str) -> Accelerator | None:
        return next((a for a in self.accelerators if a.name == name), None)

    def fp8_names(self) -> list[str]:
        return [a.name for a in self.accelerators if a.fp8]

    def with_overrides(self, override_yaml: str) -> Catalog:
        """Merge a ConfigMap's catalog YAML: same-named entries are patched, new ones added."""
        return self.with_patch(yaml.safe_load(override_yaml))

    def with_patch(self, patch: Any) -> Catalog:
        """`with_overrides` on parsed YAML (None: nothing to merge). A wrong shape or field is
        a ValueError whose message is one line naming the entry and the field."""
        if patch is None:
            return self
        if not isinstance(patch, dict) or set(patch) - {"accelerators"}:
            raise ValueError("a catalog is a mapping with one key, accelerators (a list)")
        entries = patch.get("accelerators") or []
        if not isinstance(entries, list):
            raise ValueError("accelerators: must be a list")
        merged: dict[str, dict[str, Any]] = {
            a.name: a.model_dump(by_alias=True) for a in self.accelerators
        }
        for index, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                raise ValueError(f"accelerators[{index}]: must be a mapping with a name")
            merged[name] = _deep_merge(merged.get(name, {}), entry)
            try:
                Accelerator.model_validate(merged[name])
            except ValidationError as exc:
                first, count = exc.errors()[0], exc.error_count()
                field = ".".join(str(part) for part in first["loc"])
                more = f" (and {count - 1} more)" if count > 1 else ""
                raise ValueError(
                    f"accelerators[{index}] ({name}): {field}: {first['msg']}{more}"
                ) from None
        return Catalog.model_validate({"accelerators": list(merged.values())})


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@cache
def default_catalog() -> Catalog:
    """The catalog shipped with the operator (package data)."""
    text = resources.files("llm_operator").joinpath("catalog_defaults.yaml").read_text()
    return Catalog.model_validate(yaml.safe_load(text))
