"""YAML read as the API server reads it (sigs.k8s.io/yaml over go-yaml), so `llmops validate`
sees the numbers `kubectl apply` sends.

PyYAML implements YAML 1.1's scalar rules: `8e3` (no dot) and `0o20000` are strings to it,
and integers or floats to the server. Both are added here, and a duplicate key is an error
as in the server's strict decoding; the rest of PyYAML's safe schema is unchanged
(tests/integration/kube/test_validate_parity.py checks against a real server).

`read_documents` is how every `llmops` command reads a file: bounded in size, nesting and
alias expansion (a "billion laughs" is refused while composing, before anything expands it),
strict UTF-8, and every failure one line (`InputFileError`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_OCTAL_0O = re.compile(r"^[-+]?0o[0-7_]+$")


# Far beyond any real manifest (an LLMDeployment is a few KB, nests ~10 deep, and etcd keeps
# objects under 1.5 MiB); small enough that the pure-Python parser ends within seconds and
# that as_served / pydantic never meet Python's recursion limit.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 100
MAX_ALIAS_NODES = 10_000  # nodes aliases may add to one document, beyond its own


class InputFileError(ValueError):
    """A file `llmops` cannot read as YAML; the message is one line that names the file."""


class KubeYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader plus exponent floats without a dot and 0o octal integers; a key twice
    in one mapping is an error (PyYAML keeps the last; the server's strict decoding refuses).
    Nesting deeper than MAX_DEPTH, an alias inside the node it names, and aliases that would
    expand a document by more than MAX_ALIAS_NODES nodes are errors while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._own_nodes = 0  # nodes written out in this document (aliases not counted)
        self._expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, height) expanded

    def compose_document(self) -> yaml.Node | None:
        try:
            node = super().compose_document()
        finally:
            self._own_nodes, self._expanded = 0, {}
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._expanded:
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} is inside the node it names",
                    event.start_mark,
                )  # fmt: skip
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )  # fmt: skip
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._own_nodes += 1
            self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> None:
        """Record the node's size and height with every alias expanded, from its children's
        (composed before it), so a billion laughs costs one addition per node."""
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes = [self._expanded[id(child)] for child in children]
        nodes = 1 + sum(size for size, _ in sizes)
        height = 1 + max((h for _, h in sizes), default=0)
        if height > MAX_DEPTH:
            problem = f"aliases nest the document deeper than {MAX_DEPTH} levels"
        elif nodes - self._own_nodes > MAX_ALIAS_NODES:
            problem = f"aliases expand the document by more than {MAX_ALIAS_NODES:,} nodes"
        else:
            self._expanded[id(node)] = (nodes, height)
            return
        raise yaml.composer.ComposerError(None, None, problem, node.start_mark)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`: merged keys may be overridden here, as in go-yaml
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


def read_documents(path: str) -> list[tuple[int, Any]]:
    """The non-empty documents of a YAML file (`-`: stdin) with their index in the file; an
    InputFileError when the file is missing, too large, not UTF-8 or not (bounded) YAML."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputFileError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputFileError(f"{path}: larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        raise InputFileError(
            f"{path}: not UTF-8 text (byte 0x{byte:02x} at offset {exc.start})"
        ) from None
    try:
        return [(index, doc) for index, doc in enumerate(load_all(text)) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "not YAML"
        raise InputFileError(f"{path}: {where}{problem}") from None
    except yaml.reader.ReaderError as exc:
        raise InputFileError(
            f"{path}: character #x{exc.character:04x} at offset {exc.position}: {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:  # any other PyYAML error, still in one line
        raise InputFileError(f"{path}: {' '.join(str(exc).split())}") from None
