"""`--static-models FILE`: a fixed model → replica URLs map, for local runs and demos.

    tiny:
      - http://127.0.0.1:8001
      - http://127.0.0.1:8002

Every listed replica counts as ready; a dead one is skipped after its first refused connection.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

from llm_gateway.directory import ModelTarget, Replica

STATIC_NAMESPACE = "static"


class StaticModelsError(ValueError):
    pass


def _replica(model: str, url: object) -> Replica:
    if not isinstance(url, str):
        raise StaticModelsError(f"model {model!r}: each replica must be a URL string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise StaticModelsError(f"model {model!r}: {url!r} is not http(s)://HOST:PORT")
    return Replica(pod=parts.netloc, url=url.rstrip("/"), ready=True, terminating=False)


def parse_static_models(document: object) -> list[ModelTarget]:
    if not isinstance(document, dict) or not document:
        raise StaticModelsError("expected a mapping of model name -> list of replica URLs")
    targets = []
    for model, urls in document.items():
        if not isinstance(model, str) or not model:
            raise StaticModelsError(f"model names must be non-empty strings, got {model!r}")
        if not isinstance(urls, list):
            raise StaticModelsError(f"model {model!r}: expected a list of URLs, got {urls!r}")
        replicas = tuple(_replica(model, url) for url in urls)
        targets.append(ModelTarget(model, STATIC_NAMESPACE, model, replicas))
    return targets


def load_static_models(path: Path) -> list[ModelTarget]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StaticModelsError(f"{path}: {exc}") from None
    try:
        return parse_static_models(document)
    except StaticModelsError as exc:
        raise StaticModelsError(f"{path}: {exc}") from None
