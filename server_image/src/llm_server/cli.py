"""`llm-server`: parse flags into a frozen ServerConfig, then serve until drained.

`llm-server quantize --model DIR --quantization int8|int4 --out DIR` saves pre-quantized
weights instead (see docs/quantization.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from llm_server import __version__
from llm_server.config import TINY_RANDOM, ConfigError, ServerConfig, default_cache_dir

API_KEY_ENV = "LLM_SERVER_API_KEY"  # vLLM reads VLLM_API_KEY the same way


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-server",
        description="OpenAI-compatible LLM server with continuous batching and paged KV cache.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--version", action="version", version=f"llm-server {__version__}")
    add(
        "--model",
        required=True,
        help="Hugging Face-format directory, .gguf file, hf://ORG/NAME[/FILE.gguf], s3:// or "
        f"gs:// URI, or {TINY_RANDOM}",
    )
    add("--served-model-name", nargs="+", default=None, dest="served_model_names",
        help="Name(s) clients use in `model`; the first labels metrics. Default: the "
        "model directory's name")  # fmt: skip
    add("--host", default="0.0.0.0")
    add("--port", type=int, default=8000)
    add("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), fp32, bf16, fp16")
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add("--quantization", default="none",
        help="weight quantization: none, int8 (per channel), int4 (group-wise), fp8 (Ada/"
        "Hopper GPUs); a pre-quantized --model is detected and needs none")  # fmt: skip
    add("--quant-group-size", type=int, default=None,
        help="int4 only: input columns per step and offset: 32 (default), 64 or 128")  # fmt: skip
    add("--kv-cache-dtype", default="auto",
        help="auto (the compute dtype), fp32, bf16, fp16, fp8 (upcast on read)")  # fmt: skip
    add("--revision", default=None, help="model revision, recorded for identity")
    add("--block-size", type=int, default=16, help="tokens per KV-cache block")
    add("--num-kv-blocks", type=int, default=None, help="exact KV block count")
    add("--kv-cache-memory-gib", type=float, default=None, help="KV-cache memory budget")
    add("--max-num-seqs", type=int, default=64, help="sequences in one batch")
    add("--max-num-batched-tokens", type=int, default=2048, help="token budget of one step")
    add("--no-chunked-prefill", action="store_false", dest="enable_chunked_prefill")
    add("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True,
        help="reuse the KV blocks of prompt prefixes shared between requests")  # fmt: skip
    add("--response-cache", action="store_true",
        help="answer repeated deterministic requests (temperature 0 or a seed) again")  # fmt: skip
    add("--response-cache-ttl-seconds", type=float, default=300.0, help="how long an answer lives")
    add("--response-cache-max-entries", type=int, default=10000, help="LRU entry bound")
    add("--response-cache-max-bytes", type=int, default=256 * 1024 * 1024, help="LRU byte bound")
    add("--max-waiting", type=int, default=256, help="waiting-queue bound; beyond it: 429")
    add("--max-model-len", type=int, default=None, help="context length; default: the model's")
    add("--seed", type=int, default=0, help="seeds requests that bring no seed")
    add("--tensor-parallel-size", type=int, default=1,
        help="GPUs (ranks) to split the model across; must divide its head counts")  # fmt: skip
    add("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
        help="on a GPU, capture decode steps at batch sizes 1, 2, 4 ... --max-num-seqs as "
        "CUDA graphs at start-up and replay them (one rank only)")  # fmt: skip
    add("--max-request-body-bytes", type=int, default=4 * 1024 * 1024, help="beyond it: 413")
    add("--max-prompt-tokens", type=int, default=None, help="longer prompts get 400")
    add("--max-prompt-chars", type=int, default=1_000_000,
        help="longer prompts (or rendered chat prompts) get 413, before tokenizing")  # fmt: skip
    add("--trust-request-chat-template", action="store_true",
        help="accept a client's chat_template (request field or chat_template_kwargs); "
        "refused with 400 by default: templates are code")  # fmt: skip
    add("--drain-grace-seconds", type=float, default=30.0,
        help="on SIGTERM, how long accepted requests may run before they are aborted")  # fmt: skip
    add("--retry-after-seconds", type=int, default=1, help="Retry-After on 429 and 503")
    add("--http-header-timeout-seconds", type=float, default=10.0,
        help="a request's headers must arrive within this, else the connection closes")  # fmt: skip
    add("--http-body-timeout-seconds", type=float, default=60.0,
        help="a request's body must arrive within this after its headers")  # fmt: skip
    add("--http-keep-alive-seconds", type=float, default=5.0,
        help="an idle kept-alive connection closes after this")  # fmt: skip
    add("--max-header-bytes", type=int, default=16 * 1024,
        help="request line + headers; beyond it: 400")  # fmt: skip
    add("--limit-concurrency", type=int, default=None,
        help="connections + requests at once; beyond it: 503 (probes too)")  # fmt: skip
    add("--api-key", action="append", default=None, dest="api_key",
        help=f"require `Authorization: Bearer KEY` on /v1/*; repeat or comma-separate "
        f"for several keys; also read from ${API_KEY_ENV} (/health, /ready, /metrics stay "
        "open)")  # fmt: skip
    add("--api-key-file", type=Path, default=None,
        help="file with the key(s), one a line or comma-separated (a mounted Secret)")  # fmt: skip
    add("--log-level", default="info")
    add("--cache-dir", type=Path, default=default_cache_dir(), help=f"where {TINY_RANDOM} is built")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> ServerConfig:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    args["served_model_names"] = tuple(args["served_model_names"] or ())
    try:
        args["api_keys"] = api_keys(args.pop("api_key"), args.pop("api_key_file"))
        return ServerConfig(**args)
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"--api-key-file: {exc}")
    except ConfigError as exc:
        parser.error(str(exc))  # exits 2 with the usage line, like any bad flag


def api_keys(flags: Sequence[str] | None, key_file: Path | None) -> tuple[str, ...]:
    """Every key from the flags, the key file and the environment, deduplicated. A key file
    without a key is an error: serving unauthenticated because a Secret was empty would be
    silent."""
    sources = [*(flags or ()), os.environ.get(API_KEY_ENV, "")]
    if key_file is not None:
        from_file = split_keys(key_file.read_text(encoding="utf-8").replace("\n", ","))
        if not from_file:
            raise ConfigError(f"--api-key-file {key_file}: holds no key")
        sources.extend(from_file)
    return tuple(dict.fromkeys(key for source in sources for key in split_keys(source)))


def split_keys(text: str) -> list[str]:
    return [key.strip() for key in text.split(",") if key.strip()]


def build_quantize_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-server quantize",
        description="Save a model's weights pre-quantized, so llm-server loads them as they are.",
    )
    add = parser.add_argument
    add("--model", required=True, type=Path, help="Hugging Face-format directory")
    add("--quantization", required=True, choices=["int8", "int4", "fp8"])
    add("--group-size", type=int, default=None, help="int4 only: 32, 64 or 128 (default 32)")
    add("--out", required=True, type=Path, help="new (or empty) directory to write")
    return parser


def quantize_main(argv: Sequence[str]) -> int:
    parser = build_quantize_parser()
    args = parser.parse_args(argv)
    from llm_server.quantization.checkpoint import save_quantized  # torch: after parsing
    from llm_server.quantization.scheme import QuantScheme

    try:
        scheme = QuantScheme(args.quantization, args.group_size)
        if not (args.model / "config.json").is_file():
            raise ValueError(f"--model {args.model}: no config.json in that directory")
        sizes = save_quantized(args.model, args.out, scheme)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    before, after = sizes["bytes_before"] / 2**20, sizes["bytes_after"] / 2**20
    print(f"wrote {args.out} ({scheme.label}): weights {before:.1f} MiB -> {after:.1f} MiB")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["quantize"]:
        return quantize_main(args[1:])
    config = parse_config(args)
    if config.model_is_gguf_file:
        from llm_server.gguf_file import GgufError, summarize

        try:  # before listening: a bad file is one line and exit 1, not a failed server
            summarize(config.model)
        except GgufError as exc:
            print(f"llm-server: error: {exc}", file=sys.stderr)
            return 1
    logging.basicConfig(
        level=config.log_level.upper() if config.log_level != "trace" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from llm_server.api.server import serve  # after parsing, so --help stays fast

    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
