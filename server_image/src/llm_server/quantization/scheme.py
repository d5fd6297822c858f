"""What a quantized weight looks like: the method, its group size, and its bytes per parameter.

Pure (no torch): the CLI validates flags with it and tests compare its figures with the shared
table in docs/bytes_per_parameter.json, which the operator's memory estimator also tests against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METHODS = ("none", "int8", "int4", "fp8")
INT4_GROUP_SIZES = (32, 64, 128)
# 32: GGUF's Q4_0/Q4_1 block, so a GGUF model's blocks are kept exactly; it divides every
# layer size a real model uses (a multiple of 32), and it was the most faithful size measured
# (docs/benchmarks/quant_fidelity.md). Larger groups save 0.06 (g64) or 0.09 (g128) bytes per
# parameter and cost fidelity.
DEFAULT_INT4_GROUP_SIZE = 32

# Storage of one quantized value, and of its scales. Per-output-channel scales (int8, fp8) are
# fp32, one per row: 4 / in_features bytes per parameter (0.1% at 4096 inputs), left out of the
# headline figure as the operator's table does. int4 groups keep an fp16 step and an fp16
# offset (zero point) each.
VALUE_BYTES = {"none": 2.0, "int8": 1.0, "fp8": 1.0, "int4": 0.5}
CHANNEL_SCALE_BYTES = 4  # fp32
GROUP_SCALE_BYTES = 4  # fp16 step + fp16 offset

# Written beside pre-quantized safetensors by `llm-server quantize`; its presence marks the dir.
CONFIG_FILE = "llm_server_quantization.json"
FORMAT_VERSION = 2  # 2: int4 is asymmetric (step, offset); 1 was symmetric


class QuantizationError(ValueError):
    """The model cannot be stored in the requested scheme; the message says what would work."""


@dataclass(frozen=True)
class QuantScheme:
    method: str = "none"
    group_size: int | None = None  # int4 only: input columns sharing one scale

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"quantization {self.method!r}: expected one of {METHODS}")
        if self.method == "int4":
            size = DEFAULT_INT4_GROUP_SIZE if self.group_size is None else self.group_size
            if size not in INT4_GROUP_SIZES:
                raise ValueError(f"int4 group size {size}: expected one of {INT4_GROUP_SIZES}")
            object.__setattr__(self, "group_size", size)
        elif self.group_size is not None:
            raise ValueError(f"a group size applies to int4 only, not {self.method}")

    @property
    def quantized(self) -> bool:
        return self.method != "none"

    @property
    def label(self) -> str:
        """'int4-g128', 'int8', 'none': one word for logs and reports."""
        return f"int4-g{self.group_size}" if self.method == "int4" else self.method

    def bytes_per_parameter(self) -> float:
        """Weight bytes per quantized parameter, group scales included (channel scales not)."""
        if self.method == "int4":
            assert self.group_size is not None
            return VALUE_BYTES["int4"] + GROUP_SCALE_BYTES / self.group_size
        return VALUE_BYTES[self.method]

    def check_in_features(self, in_features: int, layer: str) -> None:
        """int4 groups and packing need the input size to be a multiple of the group size."""
        if self.method == "int4":
            assert self.group_size is not None
            if in_features % self.group_size:
                usable = [g for g in INT4_GROUP_SIZES if in_features % g == 0]
                raise QuantizationError(
                    f"int4 group size {self.group_size} does not divide {layer}'s input size "
                    f"{in_features}" + (f"; use one of {usable}" if usable else "; use int8")
                )

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "method": self.method,
                "group_size": self.group_size}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuantScheme:
        version = data.get("format_version")
        if version == 1:
            raise ValueError(
                f"{CONFIG_FILE}: format_version 1 (symmetric int4) is no longer read; "
                "re-run `llm-server quantize` on the unquantized checkpoint"
            )
        if version != FORMAT_VERSION:
            raise ValueError(f"{CONFIG_FILE}: unknown format_version {version}")
        return cls(str(data["method"]), data.get("group_size"))


def read_scheme(model_dir: Path) -> QuantScheme | None:
    """The scheme a pre-quantized directory was written with; None for an ordinary one."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return QuantScheme.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def resolve_quantization(
    method: str, group_size: int | None, stored: QuantScheme | None
) -> QuantScheme:
    """The scheme to run: the request, or what a pre-quantized directory holds.

    `none` on a pre-quantized directory means "as stored"; anything else must match it (a
    group size left unset matches any).
    """
    if stored is None:
        return QuantScheme(method, group_size if method == "int4" else None)
    if method == "none" or (method == stored.method and group_size in (None, stored.group_size)):
        return stored
    asked = method + (f" with group size {group_size}" if group_size else "")
    raise ValueError(
        f"the model directory holds pre-quantized {stored.label} weights, which cannot be run "
        f"as {asked}: pass --quantization {stored.method} (or none), or point --model at the "
        "unquantized checkpoint"
    )
