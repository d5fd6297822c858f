"""Every Triton kernel compiles to a Hopper (sm_90) cubin, on any machine.

The interpreter runs the kernels' Python semantics, not the GPU compiler; this compiles them
with Triton's real CUDA backend (it needs no GPU, only the ptxas bundled with triton), so a
kernel that would fail to compile on the first GPU run fails here instead. fp8 variants too.
Each compile runs in a child process without TRITON_INTERPRET (which this directory's
conftest sets, and under which the kernels are not compilable JIT functions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("triton")

COMPILE = """
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from llm_server.kernels import (channel_matmul, int4_matmul, merge_attention_splits,
                                paged_decode_attention, paged_decode_attention_per_head)

kernels = {"channel_gemv": channel_matmul._gemv_kernel, "channel_gemm": channel_matmul._gemm_kernel,
           "int4_gemv": int4_matmul._gemv_kernel, "int4_gemm": int4_matmul._gemm_kernel,
           "paged_decode": paged_decode_attention._grouped_decode_kernel,
           "merge_splits": merge_attention_splits._merge_kernel,
           "per_head_decode": paged_decode_attention_per_head._per_head_decode_kernel}
for name, signature, constexprs in json.loads(sys.argv[1]):
    for key in constexprs:
        signature[key] = "constexpr"
    source = ASTSource(fn=kernels[name], signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    assert compiled.asm["cubin"], name
    print("compiled", name)
"""
I32 = "i32"


def _compile(cases: list[tuple[str, dict[str, str], dict[str, Any]]]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", COMPILE, json.dumps(cases)],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("compiled") == len(cases)


def _matmul_signature(weight: str, scale: str, x: str, gemm: bool, grouped: bool) -> dict[str, str]:
    names = ["N", "K", "stride_xm", "stride_wn"] + (["stride_sn"] if grouped else [])
    names = (["M"] if gemm else []) + names + ["stride_ym"]
    pointers = {"x_ptr": x, "w_ptr": weight, "s_ptr": scale, "y_ptr": x}
    return {**pointers, **dict.fromkeys(names, I32)}


@pytest.mark.slow
def test_channel_matmul_kernels_compile() -> None:
    cases = []
    for weight, x in [("*i8", "*bf16"), ("*fp8e4nv", "*bf16"), ("*i8", "*fp32")]:
        precision = "ieee" if x == "*fp32" else "tf32"
        gemv = _matmul_signature(weight, "*fp32", x, gemm=False, grouped=False)
        cases.append(("channel_gemv", gemv, {"BLOCK_N": 32, "BLOCK_K": 128}))
        gemm = _matmul_signature(weight, "*fp32", x, gemm=True, grouped=False)
        constants = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "PRECISION": precision}
        cases.append(("channel_gemm", gemm, constants))
    _compile(cases)


@pytest.mark.slow
def test_int4_matmul_kernels_compile() -> None:
    cases = []
    for group in (32, 128):
        gemv = _matmul_signature("*u8", "*fp16", "*bf16", gemm=False, grouped=True)
        cases.append(("int4_gemv", gemv, {"G": group, "BLOCK_N": 32}))
        gemm = _matmul_signature("*u8", "*fp16", "*bf16", gemm=True, grouped=True)
        constants = {"G": group, "BLOCK_M": 64, "BLOCK_N": 64, "PRECISION": "tf32"}
        cases.append(("int4_gemm", gemm, constants))
    _compile(cases)


@pytest.mark.slow
def test_paged_decode_kernels_compile() -> None:
    """bf16 and fp8 caches; query groups 1, 4 and 8 (padded to tl.dot's 16 rows); one program
    per (sequence, KV head) and split-K with its merge; the per-head baseline."""
    strides = ["stride_qb", "stride_qh", "stride_cb", "stride_ct", "stride_ch", "stride_tb",
               "stride_ob", "stride_oh", "stride_os", "stride_lb", "stride_lh", "BLOCK_SIZE",
               "HEAD_DIM"]  # fmt: skip
    cases = []
    for cache, group, splits in [("*bf16", 4, 1), ("*fp8e4nv", 8, 1), ("*bf16", 1, 8)]:
        out = "*bf16" if splits == 1 else "*fp32"  # split-K writes float32 partials
        signature = {"q_ptr": "*bf16", "k_ptr": cache, "v_ptr": cache, "table_ptr": "*i64",
                     "len_ptr": "*i64", "out_ptr": out, "lse_ptr": "*fp32", "scale": "fp32",
                     **dict.fromkeys(strides, I32)}  # fmt: skip
        constants = {"GROUP": group, "NUM_SPLITS": splits, "BLOCK_G": 16, "TILE": 64,
                     "BLOCK_D": 128, "PRECISION": "tf32"}  # fmt: skip
        cases.append(("paged_decode", signature, constants))
    merge_ints = ["stride_pb", "stride_ph", "stride_ps", "stride_lb", "stride_lh", "stride_ob",
                  "stride_oh", "NUM_SPLITS", "HEAD_DIM"]  # fmt: skip
    merge = {"part_ptr": "*fp32", "lse_ptr": "*fp32", "out_ptr": "*bf16",
             **dict.fromkeys(merge_ints, I32)}  # fmt: skip
    cases.append(("merge_splits", merge, {"BLOCK_S": 8, "BLOCK_D": 128}))
    per_head = {"q_ptr": "*bf16", "k_ptr": "*bf16", "v_ptr": "*bf16", "table_ptr": "*i64",
                "len_ptr": "*i64", "out_ptr": "*bf16", "scale": "fp32",
                **dict.fromkeys(["stride_qb", "stride_qh", "stride_cb", "stride_ct", "stride_ch",
                                 "stride_tb", "stride_ob", "stride_oh", "BLOCK_SIZE",
                                 "HEAD_DIM"], I32)}  # fmt: skip
    cases.append(("per_head_decode", per_head, {"GROUP": 4, "BLOCK_T": 16, "BLOCK_D": 128}))
    _compile(cases)
