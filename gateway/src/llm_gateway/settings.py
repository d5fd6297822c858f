"""The gateway's settings: CLI flags over `LLM_GATEWAY_*` environment variables over defaults.

Validated once at start-up into a frozen object; nothing changes it afterwards.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

ENV_PREFIX = "LLM_GATEWAY_"


class SettingsError(ValueError):
    """A bad flag or environment value; the CLI prints it on one line and exits 2."""


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "0.0.0.0"
    port: int = 8080  # the OpenAI API, /healthz, /readyz and /metrics
    namespaces: tuple[str, ...] = ()  # watched namespaces; empty = all
    prefix_chars: int = 256  # leading prompt characters hashed for affinity
    load_factor: float = 1.25  # bounded load c: a replica takes ≤ ceil(c × mean load)
    max_held_per_model: int = 100
    hold_timeout_seconds: float = 300.0
    max_queued_per_model: int = 1000  # a saturated model's fair queue; beyond it: shed or 429
    queue_timeout_seconds: float = 60.0  # longest wait in that queue (then 429)
    upstream_timeout_seconds: float = 600.0  # longest silence from a replica mid-response
    connect_timeout_seconds: float = 5.0
    scrape_interval_seconds: float = 2.0  # pods' /metrics (queue and running counts)
    failing_seconds: float = 5.0  # a replica that refused a connection is skipped this long
    max_body_bytes: int = 32 * 1024 * 1024
    static_models: Path | None = None  # YAML: model -> list of replica URLs
    kube: bool = False  # discover LLMDeployments and EndpointSlices through the API server
    require_tenant_key: bool = False  # refuse (401) requests without an LLMTenant's key
    replicas_hint: int = 1  # gateway replicas: each enforces 1/N of every per-minute limit
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be 1-65535, got {self.port}")
        if self.load_factor < 1:
            raise SettingsError(f"load_factor must be ≥ 1, got {self.load_factor}")
        for name in (
            "prefix_chars", "max_held_per_model", "max_queued_per_model", "max_body_bytes",
            "replicas_hint",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in (
            "hold_timeout_seconds", "queue_timeout_seconds", "upstream_timeout_seconds",
            "connect_timeout_seconds",
            "scrape_interval_seconds", "failing_seconds",
        ):  # fmt: skip
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be > 0, got {getattr(self, name)}")


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise SettingsError(message)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _convert(name: str, kind: Any, raw: str) -> Any:
    try:
        if kind is bool:
            if raw.lower() not in ("1", "true", "yes", "0", "false", "no", ""):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if name == "namespaces":
            return tuple(ns for ns in (part.strip() for part in raw.split(",")) if ns)
        if name == "static_models":
            return Path(raw)
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{_flag(name)}: invalid value {raw!r}") from None


_KINDS: dict[str, Any] = {
    "host": str, "port": int, "namespaces": tuple, "prefix_chars": int, "load_factor": float,
    "max_held_per_model": int, "hold_timeout_seconds": float, "max_queued_per_model": int,
    "queue_timeout_seconds": float,
    "upstream_timeout_seconds": float, "connect_timeout_seconds": float,
    "scrape_interval_seconds": float, "failing_seconds": float, "max_body_bytes": int,
    "static_models": Path, "kube": bool, "log_level": str, "require_tenant_key": bool,
    "replicas_hint": int,
}  # fmt: skip


def parse_settings(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> GatewaySettings:
    """Flags win over `LLM_GATEWAY_<NAME>` variables, which win over the defaults."""
    assert set(_KINDS) == {f.name for f in fields(GatewaySettings)}
    parser = _OneLineParser(prog="llm-gateway", description="OpenAI front door for LLMDeployments")
    for name, kind in _KINDS.items():
        if kind is bool:
            parser.add_argument(_flag(name), action="store_const", const="true", dest=name)
        else:
            parser.add_argument(_flag(name), dest=name, metavar=name.upper())
    args = parser.parse_args(list(argv))
    values: dict[str, Any] = {}
    for name, kind in _KINDS.items():
        raw = getattr(args, name)
        if raw is None:
            raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _convert(name, kind, raw)
    settings = GatewaySettings(**values)
    if settings.kube == (settings.static_models is not None):
        raise SettingsError("choose exactly one directory: --kube or --static-models FILE")
    if settings.require_tenant_key and not settings.kube:
        raise SettingsError("--require-tenant-key needs --kube (keys are LLMTenants' Secrets)")
    return settings
