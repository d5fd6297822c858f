"""The seeded workload every server gets: text prompts of a known token length.

Prompts are "The" and then words that SmolLM2's tokenizer encodes as one token each with their
leading space, so a prompt of n tokens is n words (checked against both servers' reported
`usage.prompt_tokens`). Text, not token ids, so any OpenAI-compatible server accepts it; and a
different seed per repetition, so no server's prefix cache answers a prompt it has seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Each " word" is one token of SmolLM2's vocabulary (as is "The", the first token).
_WORD_LIST = (
    "air area art back bird blue body book business car case change child city community "
    "company country day door early education end eye face fact family father force friend "
    "game garden girl good government great green group guy hand head health high history home "
    "horse hour house idea information issue job kid kind large late law level life light line "
    "little long lot man market member minute moment money month morning mother music name new "
    "night number office old other others paper parent part party people person place point "
    "power president problem program question reason red research result right river road room "
    "school service side small state stone story student study system table teacher team thing "
    "time tree war water way week window woman word work world year young"
)
WORDS = tuple(_WORD_LIST.split())


@dataclass(frozen=True)
class Request:
    prompt: str
    prompt_tokens: int  # what the prompt should tokenize to
    max_tokens: int


def prompt_text(rng: random.Random, tokens: int) -> str:
    """A prompt of `tokens` tokens: "The" and tokens - 1 single-token words."""
    return "The" + "".join(" " + rng.choice(WORDS) for _ in range(tokens - 1))


def make_requests(
    count: int, prompt_range: tuple[int, int], out_range: tuple[int, int], seed: int
) -> list[Request]:
    """`count` requests, prompt and output lengths uniform in their (inclusive) ranges."""
    if count < 1 or not 1 <= prompt_range[0] <= prompt_range[1]:
        raise ValueError(f"bad workload: {count} requests, prompt lengths {prompt_range}")
    if not 1 <= out_range[0] <= out_range[1]:
        raise ValueError(f"bad workload: output lengths {out_range}")
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        tokens = rng.randint(*prompt_range)
        requests.append(Request(prompt_text(rng, tokens), tokens, rng.randint(*out_range)))
    return requests
