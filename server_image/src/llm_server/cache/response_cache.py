"""An exact-match store of complete responses: TTL, an entry bound and a byte bound, LRU.

Thread-safe (one lock, never held across an await or any I/O), so the event loop and any
thread may share one instance. What a key means, and which requests may use the cache at
all, is decided by `llm_server.cache.key`; this module only stores bytes under opaque keys.

Sizes are accounted as the response bytes plus the key plus `ENTRY_OVERHEAD_BYTES` for the
bookkeeping of each entry, so `max_bytes` bounds the cache's memory, not just its payload.
A hit does not extend an entry's life: the TTL bounds how stale an answer may be.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

ENTRY_OVERHEAD_BYTES = 256  # dict slots, the entry object, tuple headers (approximate)
EVICTION_REASONS = ("expired", "max_entries", "max_bytes")


@dataclass(frozen=True)
class CachedResponse:
    """A JSON body (one part), or a stream's server-sent events in the order they went out."""

    parts: tuple[bytes, ...]
    streamed: bool

    @property
    def payload_bytes(self) -> int:
        return sum(len(part) for part in self.parts)


@dataclass(frozen=True)
class ResponseCacheStats:
    hits: int = 0
    misses: int = 0
    evictions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVICTION_REASONS, 0))
    entries: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class _Entry:
    response: CachedResponse
    size: int
    expires_at: float


class ResponseCache:
    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or ttl_seconds <= 0:
            raise ValueError("max_entries, max_bytes and ttl_seconds must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._lru: OrderedDict[bytes, _Entry] = OrderedDict()  # least recently used first
        self._by_age: OrderedDict[bytes, None] = OrderedDict()  # oldest first = expiry order
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = dict.fromkeys(EVICTION_REASONS, 0)

    def entry_size(self, key: bytes, response: CachedResponse) -> int:
        return len(key) + response.payload_bytes + ENTRY_OVERHEAD_BYTES

    def get(self, key: bytes) -> CachedResponse | None:
        """The live entry under key (now the most recently used), or None; counts hit/miss."""
        with self._lock:
            entry = self._lru.get(key)
            if entry is not None and entry.expires_at <= self._clock():
                self._remove(key, "expired")
                entry = None
            if entry is None:
                self._misses += 1
                return None
            self._lru.move_to_end(key)
            self._hits += 1
            return entry.response

    def put(self, key: bytes, response: CachedResponse) -> bool:
        """Store a response; False when it alone exceeds max_bytes or key is already live
        (two identical requests that missed together: the first answer stays)."""
        size = self.entry_size(key, response)
        if size > self.max_bytes:
            return False
        with self._lock:
            now = self._clock()
            self._purge_expired(now)
            if key in self._lru:
                return False
            while len(self._lru) >= self.max_entries:
                self._remove(next(iter(self._lru)), "max_entries")
            while self._bytes + size > self.max_bytes:
                self._remove(next(iter(self._lru)), "max_bytes")
            self._lru[key] = _Entry(response, size, now + self.ttl_seconds)
            self._by_age[key] = None
            self._bytes += size
            return True

    def stats(self) -> ResponseCacheStats:
        with self._lock:
            self._purge_expired(self._clock())
            return ResponseCacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=dict(self._evictions),
                entries=len(self._lru),
                bytes=self._bytes,
            )

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()
            self._by_age.clear()
            self._bytes = 0

    def _purge_expired(self, now: float) -> None:
        # Every entry lives ttl_seconds from its insertion, so expiry order is insertion order.
        while self._by_age:
            oldest = next(iter(self._by_age))
            if self._lru[oldest].expires_at > now:
                return
            self._remove(oldest, "expired")

    def _remove(self, key: bytes, reason: str) -> None:
        entry = self._lru.pop(key)
        del self._by_age[key]
        self._bytes -= entry.size
        self._evictions[reason] += 1
