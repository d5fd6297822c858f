"""Checking a server's tokens against transformers' logits processors, teacher-forced.

One forward of the reference model over prompt + the server's output gives the logits of every
step; transformers' processors then turn each step's logits into the scores the server should
have picked from (greedy) or sampled within (min_p). Token ids come back from chat logprobs'
`bytes`, which are each token's real bytes (byte-level BPE: bytes -> vocabulary entry).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import torch
from running_server import run_server
from smollm2_file import smollm2_gguf

from llm_server.api.token_bytes import byte_level_alphabet

# A gap below this between the best score and the server's token is an fp32 near-tie.
NEAR_TIE = 0.01


def step_scores(
    model: Any, prompt: list[int], output: list[int], processors: list[Any]
) -> list[torch.Tensor]:
    """Per output token: the processed [vocab] scores it was chosen from."""
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + output])).logits[0].float()
    steps = []
    for t in range(len(output)):
        scores = logits[len(prompt) - 1 + t][None].clone()
        input_ids = torch.tensor([prompt + output[:t]])
        for processor in processors:
            scores = processor(input_ids, scores)
        steps.append(scores[0])
    return steps


def assert_greedy(model: Any, prompt: list[int], output: list[int], processors: list[Any]) -> None:
    for t, scores in enumerate(step_scores(model, prompt, output, processors)):
        best = float(scores.max())
        assert float(scores[output[t]]) >= best - NEAR_TIE, (
            f"step {t}: token {output[t]} scores {float(scores[output[t]])}, best "
            f"{int(scores.argmax())} scores {best}"
        )


def token_ids(tokenizer: Any, content: list[Any]) -> list[int]:
    """Chat logprobs entries -> token ids, through each entry's bytes."""
    alphabet = {byte: char for char, byte in byte_level_alphabet().items()}
    ids = []
    for entry in content:
        piece = "".join(alphabet[byte] for byte in entry.bytes)
        token_id = tokenizer.convert_tokens_to_ids(piece)
        assert token_id is not None and token_id != tokenizer.unk_token_id, piece
        ids.append(int(token_id))
    return ids


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]], **template: Any) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, **template)
    return list(tokenizer.encode(text, add_special_tokens=False))


@dataclass(frozen=True)
class TransformersModel:
    model: Any
    tokenizer: Any


def load_transformers(path: Path) -> TransformersModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    return TransformersModel(model, tokenizer)


@contextmanager
def smollm2_openai_and_reference(
    log_dir: Path,
) -> Iterator[tuple[openai.OpenAI, TransformersModel]]:
    """A server on the GGUF file and transformers on the same file, loaded side by side."""
    path = smollm2_gguf()
    with ThreadPoolExecutor(1) as pool:
        reference = pool.submit(load_transformers, path)
        with run_server(path, log_dir) as server:
            base_url = f"{server.base_url}/v1"
            with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
                yield client, reference.result()
