"""Fixtures for the operator integration tests; the harness is in operator_harness.py."""

from __future__ import annotations

from operator_harness import operator_env

__all__ = ["operator_env"]
