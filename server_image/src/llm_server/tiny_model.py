"""A small random-weight model of a real architecture, saved in Hugging Face format.

Tests, the demo (`llm-server --model tiny-random`) and benchmarks load it through the same
code path as a downloaded checkpoint. Everything derives from `seed`: the training text of the
byte-level BPE tokenizer, the tokenizer, and the weights.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DEFAULT_SIZES: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "initializer_range": 0.1,  # larger than usual so greedy logits rarely tie
}
COMMON_WORDS = (
    "the a model token cache batch server request stream queue kernel tensor block layer "
    "attention scale budget cluster node replica latency cost prompt answer question hello "
    "world quick brown fox jumps over lazy dog and or but when then because while after"
)
WORDS = COMMON_WORDS.split()
FAMILIES = ("llama", "qwen2", "qwen3")


def training_text(seed: int, num_lines: int = 3000) -> list[str]:
    """Deterministic pseudo-English: real words plus invented ones, punctuation and digits."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "zen", "qua", "bri", "sto", "el", "on"]
    invented = ["".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(200)]
    vocabulary = WORDS + invented
    lines = []
    for _ in range(num_lines):
        words = rng.choices(vocabulary, k=rng.randint(3, 14))
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 999)))
        sentence = " ".join(words)
        lines.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "?", "!", ","]))
    return lines


def build_tokenizer(seed: int, vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_text(seed), trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def _hf_config(family: str, sizes: dict[str, Any], vocab_size: int, eos_ids: list[int]) -> Any:
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    common = {
        **sizes,
        "vocab_size": vocab_size,
        "eos_token_id": eos_ids,
        "bos_token_id": None,
        "pad_token_id": eos_ids[0],
        "tie_word_embeddings": False,
    }
    if family == "llama":
        return LlamaConfig(**common)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "qwen3":
        head_dim = common["hidden_size"] // common["num_attention_heads"]
        return Qwen3Config(head_dim=head_dim, **common)
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def build_tiny_model(out_dir: Path, family: str = "llama", seed: int = 0, **sizes: Any) -> Path:
    """Write config, safetensors weights, tokenizer and generation config to out_dir."""
    import torch
    from transformers import AutoModelForCausalLM

    merged = {**DEFAULT_SIZES, **sizes}
    tokenizer = build_tokenizer(seed, int(merged["vocab_size"]))
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")]
    # A vocabulary larger than the tokenizer's is padded, as many real checkpoints do.
    vocab_size = max(len(tokenizer), int(merged["vocab_size"]))
    config = _hf_config(family, merged, vocab_size, eos_ids)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for param in model.parameters():
            if param.ndim == 1:  # norm weights and biases: perturb so tests exercise them
                noise = torch.randn(param.shape, generator=generator)
                param.add_(noise * 0.1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _ensure_chat_template_in_config(out_dir)
    return out_dir


def _ensure_chat_template_in_config(out_dir: Path) -> None:
    """Older readers look for the template in tokenizer_config.json; keep it there too."""
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    if "chat_template" not in config:
        config["chat_template"] = CHAT_TEMPLATE
        config_path.write_text(json.dumps(config, indent=2) + "\n")


def ensure_tiny_model(cache_dir: Path | str, family: str = "llama", seed: int = 0) -> Path:
    """Build once into cache_dir and reuse; safe when several processes race to build it."""
    target = Path(cache_dir) / f"tiny-random-{family}-seed{seed}"
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        build_tiny_model(scratch, family=family, seed=seed)
        try:
            scratch.rename(target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
