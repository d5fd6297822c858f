"""Schemathesis against a running llm-server's own /openapi.json: valid and invalid requests for
every operation, each answer checked for no 5xx, a documented status and a body that matches
the documented schema. Shared by the CI test (test_openapi_fuzz.py, about a minute) and
`make bench` (benchmarks/openapi_fuzz.py, many more examples)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)

# A small context and queue bound every request's cost: a prompt longer than the context is a
# 400, and prompts x n beyond --max-waiting is a 400, so no example generates more than
# MAX_WAITING x MAX_MODEL_LEN tokens on the tiny model.
MAX_MODEL_LEN = 64
MAX_WAITING = 16
REQUEST_TIMEOUT_S = 60


def server_args(cache_dir: Path) -> tuple[str, ...]:
    """`run_server`'s extra arguments for a fuzz target (the tiny random model)."""
    return (
        "--cache-dir", str(cache_dir), "--max-model-len", str(MAX_MODEL_LEN),
        "--max-waiting", str(MAX_WAITING),
    )  # fmt: skip


@dataclass
class FuzzReport:
    examples: dict[str, int] = field(default_factory=dict)  # "POST /v1/completions positive"
    failures: list[str] = field(default_factory=list)  # each with its reproducing request
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total_examples(self) -> int:
        return sum(self.examples.values())


def fuzz(
    base_url: str, max_examples: int, *, derandomize: bool, seed: int | None = None
) -> FuzzReport:
    """Up to `max_examples` per operation and generation mode; a failing operation stops at
    its first (shrunk) failure, the others go on."""
    started = time.monotonic()
    report = FuzzReport()
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):  # the document itself is broken: that is a finding too
            report.failures.append(f"/openapi.json: {result.err()}")
            continue
        operation = result.ok()
        for mode in MODES:
            label = f"{operation.label} {mode.value}"
            report.examples[label] = 0
            try:
                _fuzz_operation(operation, mode, max_examples, derandomize, seed, report, label)
            except Unsatisfiable:  # no parameters or body: no invalid request to make
                del report.examples[label]
            except (Exception, FailureGroup) as failure:  # keep it, fuzz the next operation
                report.failures.append(f"{label}: {failure}")
    report.seconds = time.monotonic() - started
    return report


def _fuzz_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    max_examples: int,
    derandomize: bool,
    seed: int | None,
    report: FuzzReport,
    label: str,
) -> None:
    @settings(
        max_examples=max_examples,
        deadline=None,  # time is bounded by max_examples and the request timeout
        database=None,
        derandomize=derandomize,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        report.examples[label] += 1
        response = case.call(timeout=REQUEST_TIMEOUT_S)
        report.statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    if seed is not None and not derandomize:
        from hypothesis import seed as hypothesis_seed

        check = hypothesis_seed(seed)(check)
    check()
