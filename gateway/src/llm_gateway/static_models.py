"""`--static-models FILE`: fixed models (and routes over them), for local runs and benchmarks.

The short form maps each model name to its replica URLs:

    tiny:
      - http://127.0.0.1:8001
      - http://127.0.0.1:8002

The long form adds per-model prices and routes (each shaped like an LLMRoute's spec, parsed by
the same model; a static model's name is its deployment name):

    models:
      cheap:
        replicas: [http://127.0.0.1:8001]
        dollarsPerMillionTokens: 0.05
        capacityPerReplica: 8     # requests one replica runs at once; more wait (fair queue)
      large: [http://127.0.0.1:8002]
    routes:
      - model: assistant
        cascade: {steps: [cheap, large], gate: {minMeanTokenLogprob: -1.2}}

Every listed replica counts as ready; a dead one is skipped after its first refused connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pydantic
import yaml

from llm_gateway.directory import ModelTarget, Replica
from llm_gateway.routes import Route, RouteTable
from llm_operator.api.route import LLMRouteSpec

STATIC_NAMESPACE = "static"
PRICE_KEY = "dollarsPerMillionTokens"
CAPACITY_KEY = "capacityPerReplica"


class StaticModelsError(ValueError):
    pass


@dataclass(frozen=True)
class StaticConfig:
    targets: list[ModelTarget]
    routes: RouteTable = field(default_factory=RouteTable)


def _replica(model: str, url: object) -> Replica:
    if not isinstance(url, str):
        raise StaticModelsError(f"model {model!r}: each replica must be a URL string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise StaticModelsError(f"model {model!r}: {url!r} is not http(s)://HOST:PORT")
    return Replica(pod=parts.netloc, url=url.rstrip("/"), ready=True, terminating=False)


def _price(model: str, entry: dict[object, object]) -> float | None:
    price = entry.get(PRICE_KEY)
    if price is None:
        return None
    if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
        raise StaticModelsError(f"model {model!r}: {PRICE_KEY} must be a number ≥ 0")
    return float(price)


def _capacity(model: str, entry: dict[object, object]) -> int | None:
    capacity = entry.get(CAPACITY_KEY)
    if capacity is None:
        return None
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise StaticModelsError(f"model {model!r}: {CAPACITY_KEY} must be an integer ≥ 1")
    return capacity


def _target(model: object, entry: object) -> ModelTarget:
    if not isinstance(model, str) or not model:
        raise StaticModelsError(f"model names must be non-empty strings, got {model!r}")
    price = capacity = None
    if isinstance(entry, dict):
        unknown = set(entry) - {"replicas", PRICE_KEY, CAPACITY_KEY}
        if unknown:
            raise StaticModelsError(f"model {model!r}: unknown keys {sorted(map(str, unknown))}")
        price, capacity = _price(model, entry), _capacity(model, entry)
        entry = entry.get("replicas")
    if not isinstance(entry, list):
        raise StaticModelsError(f"model {model!r}: expected a list of URLs, got {entry!r}")
    replicas = tuple(_replica(model, url) for url in entry)
    return ModelTarget(
        model, STATIC_NAMESPACE, model, replicas, price, capacity_per_replica=capacity
    )


def _route(entry: object, models: set[str]) -> Route:
    try:
        spec = LLMRouteSpec.model_validate(entry)
    except pydantic.ValidationError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise StaticModelsError(f"route {entry!r}: {first}") from None
    unknown = [d for d in spec.deployments if d not in models]
    if unknown:
        raise StaticModelsError(f"route {spec.model!r}: no model named {', '.join(unknown)}")
    return Route.of(STATIC_NAMESPACE, spec.model, spec)


def parse_static_config(document: object) -> StaticConfig:
    if not isinstance(document, dict) or not document:
        raise StaticModelsError("expected a mapping of model name -> list of replica URLs")
    long_form = isinstance(document.get("models"), dict) or "routes" in document
    if not long_form:
        return StaticConfig([_target(m, urls) for m, urls in document.items()])
    unknown = set(document) - {"models", "routes"}
    if unknown or not isinstance(document.get("models"), dict) or not document["models"]:
        raise StaticModelsError("the long form has `models:` (a mapping) and `routes:` only")
    targets = [_target(m, entry) for m, entry in document["models"].items()]
    entries = document.get("routes") or []
    if not isinstance(entries, list):
        raise StaticModelsError("`routes:` must be a list of LLMRoute specs")
    routes = [_route(entry, {t.model for t in targets}) for entry in entries]
    table = RouteTable(routes)
    if table.collisions:
        raise StaticModelsError(f"two routes for model {table.collisions[0][0].model!r}")
    return StaticConfig(targets, table)


def parse_static_models(document: object) -> list[ModelTarget]:
    return parse_static_config(document).targets


def load_static_config(path: Path) -> StaticConfig:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StaticModelsError(f"{path}: {exc}") from None
    try:
        return parse_static_config(document)
    except StaticModelsError as exc:
        raise StaticModelsError(f"{path}: {exc}") from None


def load_static_models(path: Path) -> list[ModelTarget]:
    return load_static_config(path).targets
