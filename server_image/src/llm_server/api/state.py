"""What the handlers share: the engine once loaded, readiness, draining, in-flight requests."""

from __future__ import annotations

import asyncio
import time

from llm_server import __version__
from llm_server.api.errors import model_not_found, unavailable
from llm_server.api.generation import Engine
from llm_server.cache.key import model_revision
from llm_server.cache.response_cache import ResponseCache
from llm_server.config import ServerConfig
from llm_server.engine.request import EngineStats
from llm_server.metrics import ServerMetrics
from llm_server.quantization.scheme import QuantScheme


class InflightLease:
    """One accepted generation request; released exactly once, whichever path ends it."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._state._on_release()


class ServerState:
    def __init__(self, config: ServerConfig, device: str = "cpu", dtype: str = "") -> None:
        self.config = config
        self.engine: Engine | None = None
        self.max_model_len = 0
        self.draining = False
        self.inflight = 0
        self.started_at = int(time.time())
        self._idle = asyncio.Event()
        self._idle.set()
        self.info = info = {
            "version": __version__,
            "dtype": dtype or config.dtype,
            "device": device,
            "quantization": config.quantization,
            # Both change outputs, so they belong in the response cache's key as well.
            "quant_group_size": str(config.quant_group_size or ""),
            "kv_cache_dtype": config.kv_cache_dtype,
        }
        self.response_cache: ResponseCache | None = None
        self.cache_identity: dict[str, str] = {}
        if config.response_cache:
            self.response_cache = ResponseCache(
                config.response_cache_max_entries,
                config.response_cache_max_bytes,
                config.response_cache_ttl_seconds,
            )
            self.cache_identity = self._cache_identity(config, info)
        self.metrics = ServerMetrics(
            config.model_name,
            info,
            self._engine_stats,
            response_cache_stats=self.response_cache.stats if self.response_cache else None,
        )

    @staticmethod
    def _cache_identity(config: ServerConfig, info: dict[str, str]) -> dict[str, str]:
        """What the response cache keys on besides the request: the checkpoint and how it is
        run. `tiny-random` and URIs (at --revision) identify themselves (the builder is seeded)."""
        pinned = f"{config.model}@{config.revision}" if config.revision else config.model
        local = config.model_is_dir or config.model_is_gguf_file
        revision = model_revision(config.model) if local else pinned
        return {"revision": revision, **{key: info[key] for key in sorted(info)}}

    def _engine_stats(self) -> EngineStats | None:
        return self.engine.stats() if self.engine is not None else None

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.draining and not self.engine.failed

    @property
    def alive(self) -> bool:
        """False once the engine loop has died: only a restart recovers, so liveness fails."""
        return self.engine is None or not self.engine.failed

    def set_engine(self, engine: Engine, quantization: QuantScheme | None = None) -> None:
        """Called once the weights are loaded and the engine warmed up; `quantization` is
        what the weights run with, when only the fetched checkpoint could tell."""
        if quantization is not None:
            self._runs_with(quantization)
        self.engine = engine
        self.max_model_len = engine.max_model_len
        self.metrics.set_ready(self.ready)

    def _runs_with(self, quantization: QuantScheme) -> None:
        """Correct llm_server_info (and the cache key) where the checkpoint decided."""
        info = {
            **self.info,
            "quantization": quantization.method,
            "quant_group_size": str(quantization.group_size or ""),
        }
        if info == self.info:
            return
        self.info = info
        if self.response_cache is not None:
            self.cache_identity = self._cache_identity(self.config, info)
        self.metrics.set_info(info)

    def begin_drain(self) -> None:
        self.draining = True
        self.metrics.set_ready(False)

    def resolve_model(self, requested: str | None) -> str:
        """The name to answer with; any served name (alias) is accepted, none means the first."""
        if requested is None:
            return self.config.model_name
        if requested not in self.config.served_model_names:
            raise model_not_found(requested)
        return requested

    def admit(self) -> tuple[Engine, InflightLease]:
        """Accept a generation request or refuse it with 503 (loading or draining)."""
        retry = self.config.retry_after_seconds
        if self.draining:
            raise unavailable("The server is shutting down.", "draining", retry)
        if self.engine is None:
            raise unavailable("The model is still loading.", "loading", retry)
        self.inflight += 1
        self._idle.clear()
        self.metrics.set_inflight(self.inflight)
        return self.engine, InflightLease(self)

    def _on_release(self) -> None:
        self.inflight -= 1
        self.metrics.set_inflight(self.inflight)
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True when every accepted request finished within the timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
