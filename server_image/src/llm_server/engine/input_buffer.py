"""Where a step's packed inputs live: a host buffer reused step after step (pinned on CUDA,
so the copy to the device is asynchronous) and its twin on the device.

On CPU the host buffer is the device buffer: nothing is copied. On CUDA a step's inputs go
over in one non-blocking copy; before the host buffer is refilled, the previous copy out of
it must have finished (an event marks it).
"""

from __future__ import annotations

import numpy as np
import torch


def _grown(size: int) -> int:
    return max(4096, 1 << (size - 1).bit_length())  # powers of two: few reallocations


class InputBuffer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.on_cuda = device.type == "cuda"
        self._host = torch.empty(0, dtype=torch.long)
        self._device = torch.empty(0, dtype=torch.long, device=device)
        self._copied: torch.cuda.Event | None = None  # the last copy out of the host buffer

    def host(self, size: int) -> np.ndarray:
        """A writable int64 host array of `size` to pack the next step's inputs into (it is
        overwritten by the next call)."""
        if self._copied is not None:
            self._copied.synchronize()
            self._copied = None
        if size > self._host.numel():
            self._host = torch.empty(_grown(size), dtype=torch.long, pin_memory=self.on_cuda)
        array: np.ndarray = self._host[:size].numpy()
        return array

    def to_device(self, packed: np.ndarray) -> torch.Tensor:
        """`packed` on the device, valid until the next step: one copy on CUDA, none on CPU."""
        if not self.on_cuda:
            return torch.from_numpy(packed)
        size = packed.shape[0]
        if not self._holds(packed):  # built elsewhere (another rank's inputs): stage it
            self.host(size)[:] = packed
        if size > self._device.numel():
            self._device = torch.empty(_grown(size), dtype=torch.long, device=self.device)
        on_device = self._device[:size]
        on_device.copy_(self._host[:size], non_blocking=True)
        self._copied = torch.cuda.Event()  # type: ignore[no-untyped-call]
        self._copied.record()
        return on_device

    def _holds(self, packed: np.ndarray) -> bool:
        """Whether `packed` is the start of the host buffer (what host() handed out)."""
        return (
            packed.shape[0] <= self._host.numel()
            and packed.ctypes.data == self._host.data_ptr()
            and packed.strides == (8,)
        )
