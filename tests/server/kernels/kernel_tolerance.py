"""Where kernel tests run, and how close a kernel must be to its torch reference."""

from __future__ import annotations

import torch

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")

# Max abs error allowed, as a fraction of the reference's largest magnitude. fp32: only the
# summation order differs. bf16/fp16 (GPU only): the output's own rounding dominates.
RELATIVE_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}


def compute_dtypes() -> list[torch.dtype]:
    """fp32 everywhere; bf16 and fp16 on GPU (the interpreter's numpy has no bf16)."""
    return [torch.float32, torch.bfloat16, torch.float16] if ON_GPU else [torch.float32]


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = max(expected.float().abs().max().item(), 1e-6)
    error = (actual.float() - expected.float()).abs().max().item()
    limit = RELATIVE_TOLERANCE[expected.dtype] * scale
    assert error <= limit, f"max error {error:.3g} > {limit:.3g} ({expected.dtype})"
