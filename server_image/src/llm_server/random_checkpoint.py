"""A random-weight Llama checkpoint of a real model's shape, for GPU tests and benchmarks.

Speed depends on shapes, not on values, so a model of Llama-3-8B's shape with N(0, 0.02)
weights measures what the real one would, and nothing has to be downloaded. The tokenizer is
tiny_model's small BPE one (prompts are token ids; the vocabulary of the weights is the
shape's). Weights are drawn on `device` (a GPU draws 8B values in well under a second), stored
bf16 in one safetensors file, and load through llm-server's loader like a downloaded
checkpoint. Norm weights are ones, so hidden states keep unit scale through every layer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

LLAMA_SHAPES: dict[str, dict[str, int]] = {
    "tinyllama-1.1b": {
        "vocab_size": 32000,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "max_position_embeddings": 2048,
    },
    "llama-3-8b": {
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 8192,
    },
    # The scripts' --smoke runs: their plumbing on a CPU in seconds.
    "smoke": {
        "vocab_size": 1024,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
    },
}


def tensor_shapes(shape: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint, by its Llama name: the one statement of the layout."""
    hidden, mlp, vocab = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"]
    kv = shape["num_key_value_heads"] * hidden // shape["num_attention_heads"]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden),
                                          "lm_head.weight": (vocab, hidden),
                                          "model.norm.weight": (hidden,)}  # fmt: skip
    for i in range(shape["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.weight": (kv, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (mlp, hidden),
            p + "mlp.up_proj.weight": (mlp, hidden),
            p + "mlp.down_proj.weight": (hidden, mlp),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        }
    return shapes


def parameter_count(shape: dict[str, int]) -> int:
    return sum(math.prod(dims) for dims in tensor_shapes(shape).values())


def write_random_llama(out: Path, shape_name: str, seed: int = 0, device: str = "cpu") -> Path:
    """config.json, a small tokenizer and bf16 N(0, 0.02) weights under Llama's names."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from llm_server.tiny_model import build_tokenizer

    shape: dict[str, Any] = LLAMA_SHAPES[shape_name]
    out.mkdir(parents=True)
    tokenizer = build_tokenizer(seed, 512)
    tokenizer.save_pretrained(out)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(**shape, eos_token_id=eos, tie_word_embeddings=False)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(out)
    generator = torch.Generator(device=device).manual_seed(seed)

    def weight(dims: tuple[int, ...]) -> torch.Tensor:
        if len(dims) == 1:  # norm weights
            return torch.ones(dims, dtype=torch.bfloat16)
        drawn = torch.randn(dims, generator=generator, device=device, dtype=torch.float32)
        return (drawn * 0.02).to(torch.bfloat16).cpu()

    tensors = {name: weight(dims) for name, dims in tensor_shapes(shape).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
