"""The sampler reads the device once per step: every call that would make the host wait for
the device (a value read, a bool of a tensor, a blocking copy, a boolean-mask index) is
counted while a batch with every feature on samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from llm_server.layers.sampler import sample
from llm_server.sampling_params import SamplingParams

_READS = {"tolist", "item", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu",
          "nonzero", "masked_select", "multinomial", "unique"}  # fmt: skip


class HostWaits(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if (
            name in _READS
            or self._blocking_copy(name, args, kwargs)
            or self._mask_index(name, args)
        ):
            self.waits.append(name)
        return func(*args, **kwargs)

    @staticmethod
    def _blocking_copy(name: str, args: Any, kwargs: Any) -> bool:
        if name == "tensor":  # torch.tensor(host list, device=...) copies and waits
            return "device" in kwargs
        names_device = "device" in kwargs or any(
            isinstance(a, torch.device | str) for a in args[1:]
        )
        return name in ("to", "cuda") and names_device and not kwargs.get("non_blocking")

    @staticmethod
    def _mask_index(name: str, args: Any) -> bool:
        if name not in ("__getitem__", "__setitem__"):
            return False
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)


@dataclass
class History:
    prompt_token_ids: list[int]
    output_token_ids: list[int]
    banned_before_min_tokens: tuple[int, ...] = ()


def test_one_device_read_per_step_whatever_the_batch_asks() -> None:
    params = [
        SamplingParams(max_tokens=4, temperature=0.0, logprobs=3),
        SamplingParams(max_tokens=4, temperature=0.8, top_p=0.9, seed=1, logprobs=0),
        SamplingParams(max_tokens=4, temperature=1.0, top_k=5, min_p=0.05),
        SamplingParams(max_tokens=4, temperature=1.2, repetition_penalty=1.3, seed=2),
        SamplingParams(max_tokens=4, temperature=0.0, frequency_penalty=0.5, min_tokens=3),
        SamplingParams(max_tokens=4, temperature=0.9, presence_penalty=0.4),
    ]
    histories = [History([1, 2, 3], [4, 4], (0,)) for _ in params]
    logits = torch.randn(len(params), 500, generator=torch.Generator().manual_seed(0))
    logits[2] = float("nan")  # a failing row is found without a read of its own
    generators = [torch.Generator().manual_seed(i) for i in range(len(params))]
    with HostWaits() as counted:
        got = sample(logits, params, generators, histories)
    assert counted.waits == ["tolist"]
    assert [t.error is not None for t in got] == [False, False, True, False, False, False]
    assert len(got[0].top_logprobs) == 3 and got[1].logprob is not None
    assert got[1].top_logprobs == () and got[3].logprob is None


def test_the_counter_sees_the_reads_it_is_meant_to_catch() -> None:
    values = torch.randn(4)
    with HostWaits() as counted:
        bool((values > 0).any())
        torch.tensor([1, 2], device=values.device)
        values[values > 0]
        values.to("cpu")
        values.to("cpu", non_blocking=True)  # not a wait
    assert counted.waits == ["__bool__", "tensor", "__getitem__", "to"]
