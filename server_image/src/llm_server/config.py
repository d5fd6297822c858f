"""The server's settings: parsed once from the command line, validated, then frozen."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from llm_server.engine.config import EngineConfig
from llm_server.gguf_file import is_gguf
from llm_server.quantization.scheme import (
    INT4_GROUP_SIZES,
    METHODS,
    read_scheme,
    resolve_quantization,
)
from llm_server.tensor_parallel_sizes import FLAG as TP_FLAG
from llm_server.tensor_parallel_sizes import check_model_dir, model_shapes, tensor_parallel_error

TINY_RANDOM = "tiny-random"

# Accepted spellings of each dtype, normalized to the engine's names.
DTYPE_ALIASES = {
    "auto": "auto",  # fp32 on CPU, bf16 on CUDA
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
}
QUANTIZATIONS = METHODS  # none, int8, int4, fp8
# KV-cache storage: auto (the compute dtype), any compute dtype, or fp8 (e4m3, upcast on read).
KV_CACHE_DTYPES = ("auto", "fp32", "bf16", "fp16", "fp8")


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag so the operator's user can fix it."""


def default_cache_dir() -> Path:
    """Where `--model tiny-random` is built; honours XDG_CACHE_HOME like Hugging Face does."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llm-server"


@dataclass(frozen=True)
class ServerConfig:
    model: str
    served_model_names: tuple[str, ...] = ()
    host: str = "0.0.0.0"
    port: int = 8000
    dtype: str = "auto"
    device: str = "auto"
    quantization: str = "none"  # a pre-quantized --model turns none into what it holds
    quant_group_size: int | None = None  # int4 only; None: 32
    kv_cache_dtype: str = "auto"  # auto: the compute dtype; see KV_CACHE_DTYPES
    revision: str | None = None  # recorded for identity (metrics, caches); local dirs are as-is
    # Engine sizing (handed to EngineConfig unchanged).
    block_size: int = 16
    num_kv_blocks: int | None = None  # None: sized from kv_cache_memory_gib or device memory
    kv_cache_memory_gib: float | None = None
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = True  # reuse the KV blocks of shared prompt prefixes
    max_waiting: int = 256  # bounded FIFO: beyond it requests get 429
    max_model_len: int | None = None  # None: the model's own context length
    seed: int = 0  # seeds unseeded requests, so whole runs are reproducible
    tensor_parallel_size: int = 1  # ranks (GPUs) the model is split across
    cuda_graphs: bool = True  # decode steps replayed as CUDA graphs on a GPU
    # The exact-response cache (opt-in): deterministic requests only.
    response_cache: bool = False
    response_cache_ttl_seconds: float = 300.0
    response_cache_max_entries: int = 10000
    response_cache_max_bytes: int = 256 * 1024 * 1024
    # HTTP limits and lifecycle.
    max_request_body_bytes: int = 4 * 1024 * 1024
    max_prompt_tokens: int | None = None  # None: only the context length limits prompts
    # Checked before tokenizing (413): tokenizing megabytes costs seconds of CPU.
    max_prompt_chars: int = 1_000_000
    # Client-supplied chat templates run arbitrary jinja (loops): off unless the operator trusts
    # the clients, as vLLM's --trust-request-chat-template.
    trust_request_chat_template: bool = False
    drain_grace_seconds: float = 30.0
    # Slow clients: a request's headers, then its body, must arrive within these (else the
    # connection closes); an idle kept-alive connection closes after http_keep_alive_seconds.
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 60.0
    http_keep_alive_seconds: float = 5.0
    max_header_bytes: int = 16 * 1024  # request line + headers; beyond it h11 answers 400
    limit_concurrency: int | None = None  # connections + tasks; beyond it uvicorn answers 503
    # Bearer keys /v1/* requires (empty: no authentication); kept out of repr and so of logs.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    retry_after_seconds: int = 1
    log_level: str = "info"
    cache_dir: Path = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        dtype = DTYPE_ALIASES.get(self.dtype.lower())
        if dtype is None:
            raise ConfigError(f"--dtype {self.dtype!r}: expected one of {sorted(DTYPE_ALIASES)}")
        object.__setattr__(self, "dtype", dtype)
        if not self.served_model_names:
            object.__setattr__(self, "served_model_names", (self.default_model_name(),))
        self._validate()

    @property
    def model_is_dir(self) -> bool:
        """--model names a local directory (not tiny-random, a GGUF file or a URI)."""
        return self.model != TINY_RANDOM and "://" not in self.model and not is_gguf(self.model)

    @property
    def model_is_gguf_file(self) -> bool:
        """--model names a local .gguf file (checked by gguf_file.summarize before serving)."""
        return "://" not in self.model and is_gguf(self.model)

    def default_model_name(self) -> str:
        if self.model == TINY_RANDOM:
            return self.model
        if self.model.startswith("hf://"):
            return self.model.removeprefix("hf://")
        if self.model_is_gguf_file:
            return Path(self.model).stem  # SmolLM2-135M-Instruct.Q4_1
        return Path(self.model.rstrip("/")).name or self.model

    def engine_config(self, model_dir: str, cuda_available: bool) -> EngineConfig:
        """The engine's settings once the model is on disk and the device is known."""
        on_cuda = self.device.startswith("cuda") or (self.device == "auto" and cuda_available)
        dtype = ("bf16" if on_cuda else "fp32") if self.dtype == "auto" else self.dtype
        kv_bytes = self.kv_cache_memory_gib
        return EngineConfig(
            model=model_dir,
            dtype=dtype,
            device=self.device,
            block_size=self.block_size,
            num_kv_blocks=self.num_kv_blocks,
            kv_cache_memory_bytes=None if kv_bytes is None else int(kv_bytes * 1024**3),
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            chunked_prefill=self.enable_chunked_prefill,
            enable_prefix_caching=self.enable_prefix_caching,
            max_waiting=self.max_waiting,
            max_model_len=self.max_model_len,
            seed=self.seed,
            tensor_parallel_size=self.tensor_parallel_size,
            quantization=self.quantization,
            quant_group_size=self.quant_group_size,
            kv_cache_dtype=self.kv_cache_dtype,
            cuda_graphs=self.cuda_graphs,
        )

    @property
    def model_name(self) -> str:
        """The primary served name: the `model_name` label on every metric."""
        return self.served_model_names[0]

    def _validate(self) -> None:
        if not self.model:
            raise ConfigError("--model is required")
        if self.model_is_dir:
            path = Path(self.model)
            if not (path / "config.json").is_file():
                raise ConfigError(f"--model {self.model}: no config.json in that directory")
        if any(not name.strip() for name in self.served_model_names):
            raise ConfigError("--served-model-name: names must be non-empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: must be within 0..65535")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N")
        self._validate_quantization()
        kv_dtype = DTYPE_ALIASES.get(self.kv_cache_dtype.lower(), self.kv_cache_dtype.lower())
        kv_dtype = "fp8" if kv_dtype in ("fp8", "fp8_e4m3") else kv_dtype
        if kv_dtype not in KV_CACHE_DTYPES:
            raise ConfigError(f"--kv-cache-dtype {self.kv_cache_dtype}: expected {KV_CACHE_DTYPES}")
        object.__setattr__(self, "kv_cache_dtype", kv_dtype)
        positive = {
            "--block-size": self.block_size,
            "--max-num-seqs": self.max_num_seqs,
            "--max-num-batched-tokens": self.max_num_batched_tokens,
            "--max-waiting": self.max_waiting,
            "--max-request-body-bytes": self.max_request_body_bytes,
            "--max-prompt-chars": self.max_prompt_chars,
            "--http-header-timeout-seconds": self.http_header_timeout_seconds,
            "--http-body-timeout-seconds": self.http_body_timeout_seconds,
            "--http-keep-alive-seconds": self.http_keep_alive_seconds,
            "--max-header-bytes": self.max_header_bytes,
            "--retry-after-seconds": self.retry_after_seconds,
            "--response-cache-ttl-seconds": self.response_cache_ttl_seconds,
            "--response-cache-max-entries": self.response_cache_max_entries,
            "--response-cache-max-bytes": self.response_cache_max_bytes,
        }
        optional_positive = {
            "--num-kv-blocks": self.num_kv_blocks,
            "--max-model-len": self.max_model_len,
            "--max-prompt-tokens": self.max_prompt_tokens,
            "--kv-cache-memory-gib": self.kv_cache_memory_gib,
            "--limit-concurrency": self.limit_concurrency,
        }
        for flag, value in {**positive, **optional_positive}.items():
            if value is not None and value <= 0:
                raise ConfigError(f"{flag} {value}: must be positive")
        if any(not key or not key.isprintable() or {",", " "} & set(key) for key in self.api_keys):
            raise ConfigError("--api-key: keys must be non-empty, without spaces or commas")
        if self.drain_grace_seconds < 0:
            raise ConfigError(f"--drain-grace-seconds {self.drain_grace_seconds}: must be >= 0")
        if (
            not self.enable_chunked_prefill
            and self.max_model_len is not None
            and self.max_num_batched_tokens < self.max_model_len
        ):
            raise ConfigError(
                "--max-num-batched-tokens must be >= --max-model-len without chunked prefill, "
                "or a long prompt could never be scheduled"
            )
        self._validate_tensor_parallel()
        try:  # the engine's own rules, checked now rather than after the weights load
            self.engine_config(self.model, cuda_available=False)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ConfigError(f"--log-level {self.log_level!r}: unknown level")

    def _validate_quantization(self) -> None:
        """Check the flags; a pre-quantized --model directory decides (or must match) them."""
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"--quantization {self.quantization!r}: expected {QUANTIZATIONS}")
        group = self.quant_group_size
        if group is not None and self.quantization not in ("int4", "none"):
            raise ConfigError(f"--quant-group-size applies to int4, not {self.quantization}")
        if group is not None and group not in INT4_GROUP_SIZES:
            raise ConfigError(f"--quant-group-size {group}: expected one of {INT4_GROUP_SIZES}")
        try:
            stored = read_scheme(Path(self.model)) if self.model_is_dir else None  # URIs: at load
            if group is not None and self.quantization == "none" and stored is None:
                raise ValueError("--quant-group-size needs --quantization int4")
            scheme = resolve_quantization(self.quantization, group, stored)
        except ValueError as exc:
            raise ConfigError(f"--quantization: {exc}") from exc
        object.__setattr__(self, "quantization", scheme.method)
        object.__setattr__(self, "quant_group_size", scheme.group_size)
        if scheme.method == "fp8" and self.device == "cpu":
            raise ConfigError(
                "--quantization fp8 needs a GPU with fp8 support (Ada L4/L40S, Hopper "
                "H100/H200); with --device cpu use int8"
            )

    def _validate_tensor_parallel(self) -> None:
        """Refuse a size the model's head counts cannot divide, before anything loads."""
        size = self.tensor_parallel_size
        if size < 1:
            raise ConfigError(f"{TP_FLAG} {size}: must be positive")
        if size == 1 or (not self.model_is_dir and self.model != TINY_RANDOM):
            return  # a URI is checked once fetched, still before the weights load
        if self.model == TINY_RANDOM:
            from llm_server.tiny_model import DEFAULT_SIZES

            error = tensor_parallel_error(size, model_shapes(DEFAULT_SIZES))
        else:
            error = check_model_dir(size, self.model)
        if error is not None:
            raise ConfigError(error)
