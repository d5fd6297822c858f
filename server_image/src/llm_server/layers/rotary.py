"""Rotary position embeddings (RoPE), including Llama 3 and linear frequency scaling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class RopeSpec:
    head_dim: int
    theta: float
    rope_type: str = "default"  # default | linear | llama3
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    @classmethod
    def from_hf_config(cls, config: Any, head_dim: int) -> RopeSpec:
        params = dict(getattr(config, "rope_parameters", None) or {})
        legacy = getattr(config, "rope_scaling", None) or {}
        params = {**legacy, **params}
        theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        rope_type = params.get("rope_type", params.get("type", "default"))
        if rope_type not in ("default", "linear", "llama3"):
            raise ValueError(f"unsupported rope_type {rope_type!r}")
        return cls(
            head_dim=head_dim,
            theta=float(theta),
            rope_type=rope_type,
            factor=float(params.get("factor", 1.0)),
            low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=int(
                params.get(
                    "original_max_position_embeddings",
                    getattr(config, "max_position_embeddings", 8192),
                )
            ),
        )


def inverse_frequencies(spec: RopeSpec) -> torch.Tensor:
    exponents = torch.arange(0, spec.head_dim, 2, dtype=torch.int64).float() / spec.head_dim
    inv_freq = 1.0 / (spec.theta**exponents)
    if spec.rope_type == "linear":
        return inv_freq / spec.factor
    if spec.rope_type == "llama3":
        # Long wavelengths are stretched by `factor`, short ones kept, the band between blended.
        old_len = spec.original_max_position_embeddings
        low_freq_wavelen = old_len / spec.low_freq_factor
        high_freq_wavelen = old_len / spec.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / spec.factor, inv_freq)
        smooth = (old_len / wavelen - spec.low_freq_factor) / (
            spec.high_freq_factor - spec.low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / spec.factor + smooth * scaled
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(is_medium, smoothed, scaled)
    return inv_freq


class RotaryEmbedding(nn.Module):
    """Holds a cos/sin table for every position up to max_positions; lookups are an index."""

    def __init__(self, spec: RopeSpec, max_positions: int) -> None:
        super().__init__()
        self.spec = spec
        self.max_positions = max_positions
        self.cos_sin: torch.Tensor | None = None

    def build(self, device: torch.device, dtype: torch.dtype) -> None:
        inv_freq = inverse_frequencies(self.spec).to(device)
        positions = torch.arange(self.max_positions, device=device, dtype=torch.float32)
        freqs = positions[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos_sin = torch.stack((emb.cos(), emb.sin())).to(dtype)

    def lookup(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for each position: [tokens, 1, head_dim], broadcast over heads."""
        if self.cos_sin is None:
            raise RuntimeError("RotaryEmbedding.build() was not called")
        return self.cos_sin[0, positions].unsqueeze(1), self.cos_sin[1, positions].unsqueeze(1)


def apply_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q: [tokens, heads, head_dim], k: [tokens, kv_heads, head_dim]."""
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
