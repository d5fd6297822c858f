"""Per-row values known on the host (request parameters, row indices) moved to the device."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def to_device(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A host list as a tensor on `device`, without waiting for the device: a blocking copy
    would wait for the whole forward pass queued before it (a host sync on CUDA)."""
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)
