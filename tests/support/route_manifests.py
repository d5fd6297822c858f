"""LLMRoute manifests shared by the unit tests (pydantic) and the real-API-server tests (the
generated CRD): both layers must accept the good ones and refuse the bad ones, naming the field.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "inference.llmops.dev/v1alpha1"


def route(name: str = "assistant", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": "LLMRoute", "metadata": metadata, "spec": spec}


def split(*targets: tuple[str, int], **spec: Any) -> dict[str, Any]:
    return route(model="assistant", targets=[{"deployment": d, "weight": w} for d, w in targets],
                 **spec)  # fmt: skip


def cascade(steps: list[str], gate: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"steps": steps}
    if gate is not None:
        body["gate"] = gate
    return route(model="assistant", cascade=body, **spec)


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("one-target", route(model="assistant", targets=[{"deployment": "chat"}])),
    ("canary", split(("chat-int4", 90), ("chat-canary", 10))),
    ("weights-1-1000", split(("a", 1), ("b", 1000))),
    ("fallback-chain", split(("chat-int4", 1), fallback=["chat-fp32", "chat-large"])),
    ("cascade-default-gate", cascade(["chat-int4", "chat-fp32"])),
    (
        "cascade-full-gate",
        cascade(
            ["small", "medium", "large"],
            {
                "minMeanTokenLogprob": -1.2,
                "escalateOnLength": True,
                "escalateOnEmpty": True,
                "rejectPattern": "(?i)i don't know",
            },
            fallback=["backup"],
        ),
    ),
    (
        "gate-only-logprob",
        cascade(
            ["a", "b"],
            {
                "minMeanTokenLogprob": -0.5,
                "escalateOnLength": False,
                "escalateOnEmpty": False,
            },
        ),
    ),
    (
        "gate-only-pattern",
        cascade(
            ["a", "b"],
            {
                "rejectPattern": "^\\s*$",
                "escalateOnLength": False,
                "escalateOnEmpty": False,
            },
        ),
    ),
    ("model-with-slash", route(model="org/assistant:v2", targets=[{"deployment": "chat"}])),
]

# (id, manifest, a field path the refusal must name)
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("neither", route(model="assistant"), "targets"),
    (
        "both",
        route(model="assistant", targets=[{"deployment": "a"}], cascade={"steps": ["a", "b"]}),
        "targets",
    ),
    ("empty-targets", route(model="assistant", targets=[]), "targets"),
    ("no-model", route(targets=[{"deployment": "a"}]), "model"),
    ("bad-model", route(model="-assistant", targets=[{"deployment": "a"}]), "model"),
    ("weight-0", split(("a", 0)), "weight"),
    ("weight-1001", split(("a", 1001)), "weight"),
    ("targets-repeated", split(("a", 50), ("a", 50)), "targets"),
    ("target-bad-name", split(("Chat_Large", 1)), "deployment"),
    ("target-64", split(("d" * 64, 1)), "deployment"),
    ("fallback-repeated", split(("a", 1), fallback=["b", "b"]), "fallback"),
    ("fallback-is-target", split(("a", 1), fallback=["a"]), "fallback"),
    ("fallback-is-step", cascade(["a", "b"], fallback=["b"]), "fallback"),
    ("cascade-one-step", cascade(["a"]), "steps"),
    ("cascade-steps-repeated", cascade(["a", "a"]), "steps"),
    ("cascade-nine-steps", cascade([f"s{i}" for i in range(9)]), "steps"),
    (
        "gate-decides-nothing",
        cascade(
            ["a", "b"],
            {
                "escalateOnLength": False,
                "escalateOnEmpty": False,
            },
        ),
        "minMeanTokenLogprob",
    ),
    (
        "gate-positive-logprob",
        cascade(["a", "b"], {"minMeanTokenLogprob": 0.5}),
        "minMeanTokenLogprob",
    ),
    ("pattern-unbalanced", cascade(["a", "b"], {"rejectPattern": "(unclosed"}), "rejectPattern"),
    ("pattern-lookahead", cascade(["a", "b"], {"rejectPattern": "foo(?=bar)"}), "rejectPattern"),
    ("pattern-backreference", cascade(["a", "b"], {"rejectPattern": "(a)\\1"}), "rejectPattern"),
    ("gate-unknown", cascade(["a", "b"], {"minLogprob": -1}), "minLogprob"),
    ("spec-unknown", split(("a", 1), owner="team-b"), "owner"),
]
