"""YAML read as the API server reads it (sigs.k8s.io/yaml over go-yaml), so `llmops validate`
sees the numbers `kubectl apply` sends.

PyYAML implements YAML 1.1's scalar rules: `8e3` (no dot) and `0o20000` are strings to it,
and integers or floats to the server. Both are added here, and a duplicate key is an error
as in the server's strict decoding; the rest of PyYAML's safe schema is unchanged
(tests/integration/kube/test_validate_parity.py checks against a real server).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_OCTAL_0O = re.compile(r"^[-+]?0o[0-7_]+$")


class KubeYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader plus exponent floats without a dot and 0o octal integers; a key twice
    in one mapping is an error (PyYAML keeps the last; the server's strict decoding refuses)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"key {key!r} already set in map", key_node.start_mark,
                )  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep)


def _octal(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    sign = -1 if text.startswith("-") else 1
    return sign * int(text.lstrip("+-")[2:], 8)


KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789")
)
KubeYamlLoader.add_implicit_resolver("!kube/octal", _OCTAL_0O, list("-+0"))
KubeYamlLoader.add_constructor("!kube/octal", _octal)


def load_all(text: str) -> Iterator[Any]:
    return yaml.load_all(text, Loader=KubeYamlLoader)  # a SafeLoader subclass
