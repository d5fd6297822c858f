"""Dense fp32 linears on CPU through oneDNN instead of the BLAS behind F.linear.

torch's CPU build runs fp32 `F.linear` on MKL's sgemm. MKL picks its code path by CPU vendor,
and on AMD CPUs that path is 2-3x slower than oneDNN's own JIT kernels (measured on an AMD
EPYC with AVX-512, the server benchmark's machine, for the benchmark model's projections).
oneDNN (bundled with torch, the kernels torch.compile uses for CPU linears) computes in fp32
as well: results agree with F.linear to rounding (~1e-6). Autograd has no formula for the
oneDNN op, so anything that may need gradients keeps F.linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ONEDNN_AVAILABLE: bool = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]


def dense_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """x @ weight.T (+ bias), as F.linear."""
    if (
        ONEDNN_AVAILABLE
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    ):
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return out
    return F.linear(x, weight, bias)
