"""A GGUF file checked before anything loads: readable, whole, an architecture and tensor
types we serve. No torch: the command line checks this before the server starts.

GGUF (llama.cpp's single-file format) holds the weights, the tokenizer and the chat template.
The server dequantizes its tensors once at load (models/gguf_checkpoint.py), so what is
checked here is what the `gguf` package can dequantize and what our model code can run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GGUF_SUFFIX = ".gguf"
GGUF_MAGIC = b"GGUF"

# GGUF `general.architecture` -> the Hugging Face architecture our model code serves.
# llama.cpp writes Mistral models as "llama"; transformers tells them apart by name.
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}

# Tensor types the `gguf` package dequantizes with numpy (block formats and the k-quants);
# the i-quants and ternary formats are left out: slow in numpy and rare for these models.
TENSOR_TYPES = (
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
)  # fmt: skip


class GgufError(ValueError):
    """The GGUF file cannot be served; the message is one line saying why (no traceback)."""


@dataclass(frozen=True)
class GgufSummary:
    """What the server and `llmops` need to know about a GGUF file without loading it."""

    path: Path
    architecture: str  # GGUF's name: llama, qwen2, qwen3
    hf_architecture: str  # ours: LlamaForCausalLM ...
    parameters: int
    tensor_types: tuple[str, ...]  # distinct, most parameters first
    file_bytes: int


def is_gguf(model: str | Path) -> bool:
    return str(model).lower().endswith(GGUF_SUFFIX)


def open_reader(path: Path) -> Any:
    """gguf's reader over a memory map; any failure becomes one GgufError line."""
    if not path.is_file():
        raise GgufError(f"{path}: no such file")
    stat = path.stat()
    return _reader(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


# Parsing the header costs about a second (the vocabulary is in it); the checks before serving,
# the config and the weights all read it: once per file version per process.
@functools.lru_cache(maxsize=2)
def _reader(name: str, _size: int, _mtime_ns: int) -> Any:
    path = Path(name)
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise GgufError(f"{path}: reading GGUF needs the `gguf` package ({exc})") from exc
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise GgufError(f"{path}: not a GGUF file (it does not start with {GGUF_MAGIC!r})")
    try:
        return GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GgufError(
            f"{path}: truncated or corrupt GGUF file ({path.stat().st_size} bytes): {reason}"
        ) from None  # one line: the reader's stack says nothing to the user


def architecture_of(reader: Any, path: Path) -> str:
    field = reader.get_field("general.architecture")
    if field is None:
        raise GgufError(f"{path}: no general.architecture in the GGUF metadata")
    architecture = str(field.contents())
    name = reader.get_field("general.name")
    if architecture == "llama" and name is not None and "mistral" in str(name.contents()).lower():
        architecture = "mistral"
    return architecture


def summarize(path: str | Path) -> GgufSummary:
    """Check the file and describe it; raises GgufError with one line otherwise."""
    path = Path(path)
    reader = open_reader(path)
    architecture = architecture_of(reader, path)
    if architecture not in ARCHITECTURES:
        raise GgufError(
            f"{path}: GGUF architecture {architecture!r} is not supported; "
            f"llm-server serves {', '.join(sorted(ARCHITECTURES))}"
        )
    file_bytes = path.stat().st_size
    elements: dict[str, int] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        if kind not in TENSOR_TYPES:
            raise GgufError(
                f"{path}: tensor {tensor.name} has type {kind}, which llm-server cannot "
                f"dequantize; supported: {', '.join(TENSOR_TYPES)}"
            )
        # The reader maps the file without reading it; a short file shows in the offsets.
        if int(tensor.data_offset) + int(tensor.n_bytes) > file_bytes:
            raise GgufError(
                f"{path}: truncated: tensor {tensor.name} ends at byte "
                f"{int(tensor.data_offset) + int(tensor.n_bytes)}, the file has {file_bytes}"
            )
        elements[kind] = elements.get(kind, 0) + int(tensor.n_elements)
    if not elements:
        raise GgufError(f"{path}: the GGUF file holds no tensors")
    return GgufSummary(
        path=path,
        architecture=architecture,
        hf_architecture=ARCHITECTURES[architecture],
        parameters=sum(elements.values()),
        tensor_types=tuple(sorted(elements, key=lambda k: -elements[k])),
        file_bytes=file_bytes,
    )
