"""Where model weights come from: the URI schemes an LLMDeployment accepts.

One table drives both the Python validator and the CRD's CEL rules, so the two layers give the
same answer and the same hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llm_operator.api.base import CrossFieldRule


@dataclass(frozen=True)
class UriScheme:
    prefix: str
    pattern: str  # RE2-compatible: the API server evaluates it in CEL
    shape: str  # shown to the user when the URI does not match


URI_SCHEMES: tuple[UriScheme, ...] = (
    UriScheme(
        "hf://",
        r"^hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*\.gguf)?$",
        "hf://ORG/NAME or hf://ORG/NAME/FILE.gguf (a Hugging Face repository, or one GGUF "
        "file of it; pin it with model.revision)",
    ),
    UriScheme("s3://", r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", "s3://BUCKET/PATH"),
    UriScheme("gs://", r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?$", "gs://BUCKET/PATH"),
    UriScheme(
        "pvc://",
        r"^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?$",
        "pvc://CLAIM/PATH (a PersistentVolumeClaim in the same namespace)",
    ),
    UriScheme("oci://", r"^oci://[a-z0-9.-]+(:[0-9]+)?/\S+$", "oci://REGISTRY/REPOSITORY:TAG"),
    UriScheme(
        "file://", r"^file:///\S*$", "file:///ABSOLUTE/PATH (a directory or .gguf file on the node)"
    ),
)

SCHEME_LIST = ", ".join(s.prefix for s in URI_SCHEMES)

KNOWN_SCHEME = CrossFieldRule(
    cel=" || ".join(f"self.uri.startsWith('{s.prefix}')" for s in URI_SCHEMES),
    message=f"model.uri must start with one of {SCHEME_LIST}",
    field_path=".uri",
    fix="point it at a Hugging Face repo, a bucket, a PVC, an OCI artifact or a local dir",
)


def _shape_rule(scheme: UriScheme) -> CrossFieldRule:
    escaped = scheme.pattern.replace("\\", "\\\\").replace("'", "\\'")
    return CrossFieldRule(
        cel=f"!self.uri.startsWith('{scheme.prefix}') || self.uri.matches('{escaped}')",
        message=f"model.uri must look like {scheme.shape}",
        field_path=".uri",
        fix=f"write it as {scheme.shape.split(' ', 1)[0]}",
    )


SHAPE_RULES = {s.prefix: _shape_rule(s) for s in URI_SCHEMES}
URI_RULES: tuple[CrossFieldRule, ...] = (KNOWN_SCHEME, *SHAPE_RULES.values())


def uri_violation(uri: str) -> CrossFieldRule | None:
    """The rule a URI breaks, or None when it is acceptable."""
    for scheme in URI_SCHEMES:
        if uri.startswith(scheme.prefix):
            return None if re.match(scheme.pattern, uri) else SHAPE_RULES[scheme.prefix]
    return KNOWN_SCHEME


GGUF_SUFFIX = ".gguf"  # a single-file checkpoint: weights, tokenizer and chat template


def is_gguf_uri(uri: str) -> bool:
    """The URI names one GGUF file (file:///PATH.gguf, hf://ORG/NAME/FILE.gguf), not a dir."""
    return uri.lower().endswith(GGUF_SUFFIX)


def served_name_from_uri(uri: str) -> str:
    """Default name clients send as `model`: the URI's last path segment, lower-cased, without
    a .gguf suffix."""
    tail = uri.rstrip("/").rsplit("/", 1)[-1]
    return tail.split(":", 1)[0].lower().removesuffix(GGUF_SUFFIX) or "model"
