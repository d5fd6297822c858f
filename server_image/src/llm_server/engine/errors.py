"""Typed errors the engine raises to its callers."""


class QueueFullError(Exception):
    """The bounded waiting queue is full; the caller should retry later (HTTP 429)."""


class RequestTooLongError(ValueError):
    """The prompt leaves no room to generate within max_model_len."""


class EngineStoppingError(Exception):
    """The server stopped before this request finished (a drain's grace period ran out)."""


class RequestFailedError(Exception):
    """One request failed inside the engine (e.g. its sampling); the others run on."""
