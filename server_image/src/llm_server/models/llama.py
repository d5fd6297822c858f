"""The Llama decoder (Llama 2/3, Mistral, TinyLlama); Qwen2/Qwen3 reuse it with switches.

Module and parameter names mirror the Hugging Face checkpoints, except that q/k/v and gate/up
are packed into one matmul each; `load_weights` maps checkpoint names onto the packed ones.

Under tensor parallelism (`tp.size` > 1) each rank holds num_heads / N query heads and
num_kv_heads / N KV heads (their q/k/v rows, o_proj columns and KV cache), and
intermediate_size / N of the MLP; o_proj and down_proj all-reduce. Embeddings, norms and
lm_head are replicated, so every rank ends a forward with the same full hidden states.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llm_server.layers.attention import AttentionMetadata, PagedAttention
from llm_server.layers.linear import (
    Linear,
    PackedLinear,
    RowParallelLinear,
    WeightSource,
    read_full,
)
from llm_server.layers.norm import RMSNorm
from llm_server.layers.rotary import RopeSpec, RotaryEmbedding, apply_rotary
from llm_server.parallel_state import SINGLE, TensorParallel

# checkpoint projection name -> (packed module name, shard index)
PACKED_NAMES = {
    "q_proj": ("qkv_proj", 0),
    "k_proj": ("qkv_proj", 1),
    "v_proj": ("qkv_proj", 2),
    "gate_proj": ("gate_up_proj", 0),
    "up_proj": ("gate_up_proj", 1),
}


@dataclass(frozen=True)
class DecoderSpec:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope: RopeSpec
    max_positions: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over each head's q and k before RoPE

    @classmethod
    def from_hf_config(cls, config: Any, **overrides: Any) -> DecoderSpec:
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        attention_bias = bool(getattr(config, "attention_bias", False))
        values: dict[str, Any] = {
            "vocab_size": config.vocab_size,
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "num_layers": config.num_hidden_layers,
            "num_heads": config.num_attention_heads,
            "num_kv_heads": getattr(config, "num_key_value_heads", None)
            or config.num_attention_heads,
            "head_dim": head_dim,
            "rms_norm_eps": config.rms_norm_eps,
            "rope": RopeSpec.from_hf_config(config, head_dim),
            "max_positions": config.max_position_embeddings,
            "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
            "qkv_bias": attention_bias,
            "o_bias": attention_bias,
            "mlp_bias": bool(getattr(config, "mlp_bias", False)),
        }
        values.update(overrides)
        return cls(**values)


class DecoderAttention(nn.Module):
    def __init__(self, spec: DecoderSpec, tp: TensorParallel = SINGLE) -> None:
        super().__init__()
        self.num_heads = tp.shard(spec.num_heads, "num_attention_heads")  # this rank's
        self.num_kv_heads = tp.shard(spec.num_kv_heads, "num_key_value_heads")
        self.head_dim = spec.head_dim
        q_size, kv_size = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
        self.qkv_proj = PackedLinear(
            spec.hidden_size, [q_size, kv_size, kv_size], spec.qkv_bias, tp=tp
        )
        self.o_proj = RowParallelLinear(q_size, spec.hidden_size, bias=spec.o_bias, tp=tp)
        self.q_norm = RMSNorm(spec.head_dim, spec.rms_norm_eps) if spec.qk_norm else None
        self.k_norm = RMSNorm(spec.head_dim, spec.rms_norm_eps) if spec.qk_norm else None
        self.attn = PagedAttention(self.num_heads, self.num_kv_heads, spec.head_dim)
        self.split_sizes = self.qkv_proj.shard_sizes

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        tokens = x.shape[0]
        q, k, v = self.qkv_proj(x).split(self.split_sizes, dim=-1)
        q = q.reshape(tokens, self.num_heads, self.head_dim)
        k = k.reshape(tokens, self.num_kv_heads, self.head_dim)
        v = v.reshape(tokens, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, k, cos, sin)
        out = self.attn(q, k, v, meta)
        projected: torch.Tensor = self.o_proj(out.reshape(tokens, self.num_heads * self.head_dim))
        return projected


class GatedMLP(nn.Module):
    def __init__(self, spec: DecoderSpec, tp: TensorParallel = SINGLE) -> None:
        super().__init__()
        size = spec.intermediate_size
        self.gate_up_proj = PackedLinear(spec.hidden_size, [size, size], spec.mlp_bias, tp=tp)
        self.down_proj = RowParallelLinear(size, spec.hidden_size, bias=spec.mlp_bias, tp=tp)
        self.intermediate_size = tp.shard(size, "intermediate_size")  # this rank's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)
        down: torch.Tensor = self.down_proj(F.silu(gate) * up)
        return down


class DecoderLayer(nn.Module):
    def __init__(self, spec: DecoderSpec, tp: TensorParallel = SINGLE) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.self_attn = DecoderAttention(spec, tp)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = GatedMLP(spec, tp)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, meta)
        out: torch.Tensor = x + self.mlp(self.post_attention_layernorm(x))
        return out


class DecoderModel(nn.Module):
    def __init__(self, spec: DecoderSpec, tp: TensorParallel = SINGLE) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(spec, tp) for _ in range(spec.num_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """forward(tokens, positions, metadata) -> hidden states; compute_logits on chosen rows."""

    def __init__(self, spec: DecoderSpec, tp: TensorParallel = SINGLE) -> None:
        super().__init__()
        self.spec = spec
        self.tp = tp
        self.model = DecoderModel(spec, tp)
        self.lm_head = Linear(spec.hidden_size, spec.vocab_size, bias=False)
        if spec.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.rotary = RotaryEmbedding(spec.rope, spec.max_positions)

    @classmethod
    def from_hf_config(cls, config: Any, tp: TensorParallel = SINGLE) -> LlamaForCausalLM:
        return cls(DecoderSpec.from_hf_config(config), tp)

    def attention_layers(self) -> list[PagedAttention]:
        return [
            layer.self_attn.attn for layer in self.model.layers if isinstance(layer, DecoderLayer)
        ]

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        cos, sin = self.rotary.lookup(positions)
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, meta)
        normed: torch.Tensor = self.model.norm(x)
        return normed

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.lm_head(hidden)
        return logits

    def load_weights(self, weights: Iterable[tuple[str, WeightSource]]) -> None:
        """Copy checkpoint tensors in (this rank's shard of each); raises if a parameter is
        missing or a name unknown."""
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in weights:
            if "rotary_emb" in name:
                continue  # older checkpoints store inv_freq; we derive it from the config
            if name == "lm_head.weight" and self.spec.tie_word_embeddings:
                continue
            module_name, _, param_name = name.rpartition(".")
            parent, _, proj = module_name.rpartition(".")
            if proj in PACKED_NAMES:
                packed, shard = PACKED_NAMES[proj]
                target = f"{parent}.{packed}"
                module = self.get_submodule(target)
                assert isinstance(module, PackedLinear)
                module.load_shard(param_name, shard, tensor)
                loaded.add(f"{target}.{param_name}")
                continue
            if name not in params:
                raise KeyError(f"checkpoint tensor {name!r} has no place in {type(self).__name__}")
            module = self.get_submodule(module_name)
            if isinstance(module, RowParallelLinear):
                module.load_full(param_name, tensor)
            else:
                with torch.no_grad():
                    params[name].copy_(read_full(tensor))
            loaded.add(name)
        missing = set(params) - loaded
        if self.spec.tie_word_embeddings:
            missing.discard("lm_head.weight")
        if missing:
            raise KeyError(f"checkpoint lacks {sorted(missing)[:5]} ({len(missing)} in all)")


# Mistral and TinyLlama checkpoints use the Llama layout unchanged.
MistralForCausalLM = LlamaForCausalLM
