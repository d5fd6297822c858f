"""Names of an LLMDeployment's children. Pure.

An LLMDeployment's name is a DNS subdomain (dots allowed: people name models
`llama-3.1-8b`), at most 63 characters (a CRD rule: it is also a label value on the pods).
A Service name may hold no dots, so children of a dotted name get dots as dashes plus a
short hash of the whole name: stable across reconciles and releases, and `a.b` never shares
children with `a-b`. A name without dots names its children itself, as before.
"""

from __future__ import annotations

import hashlib

MAX_NAME = 63  # a Service name (DNS-1035 label) and a label value
HASH_LENGTH = 6


def child_name(name: str) -> str:
    """The Deployment's, Service's, PDB's ... name for the LLMDeployment `name`."""
    if "." not in name and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:HASH_LENGTH]
    base = name.replace(".", "-")[: MAX_NAME - HASH_LENGTH - 1].rstrip("-")
    return f"{base}-{digest}"


def config_map_name(name: str) -> str:
    return f"{child_name(name)}-config"
