"""Qwen2 (biased q/k/v projections) and Qwen3 (RMSNorm on q and k per head): Llama switches."""

from __future__ import annotations

from typing import Any

from llm_server.models.llama import DecoderSpec, LlamaForCausalLM
from llm_server.parallel_state import SINGLE, TensorParallel


class Qwen2ForCausalLM(LlamaForCausalLM):
    @classmethod
    def from_hf_config(cls, config: Any, tp: TensorParallel = SINGLE) -> Qwen2ForCausalLM:
        return cls(DecoderSpec.from_hf_config(config, qkv_bias=True, o_bias=False), tp)


class Qwen3ForCausalLM(LlamaForCausalLM):
    @classmethod
    def from_hf_config(cls, config: Any, tp: TensorParallel = SINGLE) -> Qwen3ForCausalLM:
        return cls(DecoderSpec.from_hf_config(config, qk_norm=True), tp)
