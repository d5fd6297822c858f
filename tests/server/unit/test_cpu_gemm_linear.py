from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_server.layers.cpu_gemm import ONEDNN_AVAILABLE, dense_linear


@pytest.mark.parametrize("shape", [(7,), (5, 64), (2, 3, 64), (0, 64)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_dense_linear_matches_f_linear(shape: tuple[int, ...], with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    in_features = shape[-1] if len(shape) > 1 else 7
    weight = torch.randn(48, in_features, generator=gen)
    bias = torch.randn(48, generator=gen) if with_bias else None
    x = torch.randn(shape, generator=gen)
    with torch.inference_mode():
        got = dense_linear(x, weight, bias)
    expected = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    assert got.dtype == torch.float32 and got.shape == expected.shape
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_dense_linear_takes_onednn_in_inference_and_keeps_autograd_otherwise() -> None:
    weight = torch.nn.Parameter(torch.randn(8, 4))
    x = torch.randn(3, 4)
    with torch.profiler.profile() as prof, torch.inference_mode():
        dense_linear(x, weight)
    ops = {event.key for event in prof.key_averages()}
    assert ("mkldnn::_linear_pointwise" in ops) == ONEDNN_AVAILABLE
    out = dense_linear(x, weight)  # grad mode, trainable weight: F.linear, with a gradient
    out.sum().backward()
    assert weight.grad is not None
    torch.testing.assert_close(weight.grad, torch.ones(8, 3) @ x)


def test_dense_linear_leaves_other_dtypes_to_f_linear() -> None:
    weight = torch.randn(8, 4, dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64)
    with torch.inference_mode():
        assert torch.equal(dense_linear(x, weight), F.linear(x, weight))
