"""Kernel tests run the Triton kernels on CUDA when present, else on CPU in Triton's
interpreter. The interpreter is chosen when a kernel is decorated (at import), so the
variable is set here, before any test module imports llm_server.kernels."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the current default, minus its warning
