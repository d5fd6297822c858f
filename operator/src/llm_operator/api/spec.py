"""LLMDeployment spec: the model and the optimization policy a user declares.

These models are the single source of truth: the CRD in crds/ is generated from them
(`make crds`). Each cross-field rule is a `CrossFieldRule` stated once below and enforced twice:
by a pydantic validator (what `llmops validate` and the operator run) and as CEL in the CRD
(what the API server runs). Tests hold both layers to the same verdict over a table of specs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, WithJsonSchema, field_validator, model_validator

from llm_operator.api.base import ApiModel, CrossFieldRule, RuleViolation, cel_rules
from llm_operator.api.model_uri import URI_RULES, served_name_from_uri, uri_violation
from llm_operator.catalog import default_catalog

Quantization = Literal["auto", "none", "int8", "int4", "fp8"]
KvCacheDtype = Literal["auto", "fp16", "bf16", "fp8"]
CapacityType = Literal["on-demand", "spot", "spot-preferred"]
AutoscalingMode = Literal["builtin", "keda", "none"]
LoadSignal = Literal["peak", "sampled"]
FailureMode = Literal["FailClose", "FailOpen"]

# The CRD enumerates the shipped catalog's names; a ConfigMap may re-price them, not add types.
ACCELERATOR_TYPES: tuple[str, ...] = tuple(default_catalog().names())
FP8_ACCELERATORS: tuple[str, ...] = tuple(default_catalog().fp8_names())
_FP8_CEL = "[" + ", ".join(f"'{name}'" for name in FP8_ACCELERATORS) + "]"
_FP8_TEXT = ", ".join(FP8_ACCELERATORS)

# Kubernetes resource quantity, as controller-gen writes it for resource.Quantity.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _quantity(value: int | str) -> int | str:
    # fullmatch: re.match's `$` also matches before a trailing newline ("8Gi\n"); Go's not.
    if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": QUANTITY_PATTERN}]}
    ),
]
_PARAMETER_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}

# --- cross-field rules (CEL + the message both layers give) -------------------------------

BATCH_COVERS_SEQUENCES = CrossFieldRule(
    "self.maxBatchTokens >= self.maxConcurrentSequences",
    "maxBatchTokens must be at least maxConcurrentSequences "
    "(every running sequence needs one token per step)",
    ".maxBatchTokens",
    "raise maxBatchTokens or lower maxConcurrentSequences",
)
FALLBACKS_DISTINCT = CrossFieldRule(
    "!has(self.fallbacks) || "
    "self.fallbacks.all(f, self.fallbacks.exists_one(g, g.type == f.type && g.count == f.count))",
    "accelerator.fallbacks must be distinct (type and count)",
    ".fallbacks",
    "remove the repeated entry",
)
FALLBACKS_DIFFER_FROM_PRIMARY = CrossFieldRule(
    "!has(self.fallbacks) || self.fallbacks.all(f, f.type != self.type || f.count != self.count)",
    "accelerator.fallbacks must differ from the primary accelerator (type and count)",
    ".fallbacks",
    "remove that entry or change its type or count",
)
MIN_NOT_ABOVE_MAX = CrossFieldRule(
    "self.min <= self.max",
    "replicas.min must not exceed replicas.max",
    ".min",
    "lower min or raise max",
)
ENV_ONE_SOURCE = CrossFieldRule(
    "!(has(self.value) && has(self.valueFrom))",
    "an env entry must set value or valueFrom, not both",
    ".valueFrom",
    "keep one of them",
)
ENV_UNIQUE = CrossFieldRule(
    "!has(self.env) || self.env.all(e, self.env.exists_one(f, f.name == e.name))",
    "server.env names must be unique",
    ".env",
    "merge the repeated entries",
)
API_KEY_ENV = "LLM_SERVER_API_KEY"  # what llm-server reads its API key(s) from
API_KEY_ONE_SOURCE = CrossFieldRule(
    f"!has(self.apiKeySecret) || !has(self.env) || !self.env.exists(e, e.name == '{API_KEY_ENV}')",
    f"server.apiKeySecret sets {API_KEY_ENV}; server.env must not set it as well",
    ".apiKeySecret",
    f"remove the {API_KEY_ENV} env entry",
)
FP8_NEEDS_SUPPORT = CrossFieldRule(
    f"self.optimization.quantization != 'fp8' || self.accelerator.type in {_FP8_CEL}",
    f"quantization fp8 must run on an accelerator with fp8 support ({_FP8_TEXT})",
    ".optimization.quantization",
    "use int8 or auto on this accelerator, or pick one of those",
)
FALLBACK_FP8_NEEDS_SUPPORT = CrossFieldRule(
    "!has(self.accelerator.fallbacks) || "
    "self.accelerator.fallbacks.all(f, (has(f.quantization) ? f.quantization : "
    f"self.optimization.quantization) != 'fp8' || f.type in {_FP8_CEL})",
    f"a fallback running fp8 must be an accelerator with fp8 support ({_FP8_TEXT})",
    ".accelerator.fallbacks",
    "set that fallback's quantization to int8 or auto",
)
UNCHUNKED_PREFILL_FITS = CrossFieldRule(
    "self.optimization.batching.chunkedPrefill || "
    "self.optimization.batching.maxBatchTokens >= self.model.maxContextLength",
    "without chunkedPrefill, maxBatchTokens must be at least model.maxContextLength "
    "(a whole prompt is prefilled in one step)",
    ".optimization.batching.maxBatchTokens",
    "enable chunkedPrefill or raise maxBatchTokens",
)
PERCENTILE_NEEDS_WINDOW = CrossFieldRule(
    "!has(self.loadPercentile) || (has(self.loadAverageSeconds) && self.loadAverageSeconds > 0)",
    "autoscaling.advanced.loadPercentile needs a window: loadAverageSeconds above 0",
    ".loadPercentile",
    "set loadAverageSeconds (e.g. 600) or remove loadPercentile",
)
SCALE_TO_ZERO_NOT_WITH_KEDA = CrossFieldRule(
    "self.autoscaling.mode != 'keda' || self.replicas.min >= 1",
    "replicas.min 0 needs autoscaling.mode builtin (requests held by llm-gateway wake it) or "
    "none; KEDA sees no queue with no pod",
    ".replicas.min",
    "set replicas.min to 1 or more, or use autoscaling.mode builtin behind llm-gateway",
)


def _accelerator_type(description: str) -> Any:
    return Field(description=description, json_schema_extra={"enum": list(ACCELERATOR_TYPES)})


def _known_accelerator(value: str) -> str:
    if value not in ACCELERATOR_TYPES:
        raise ValueError(
            f"unknown accelerator type {value!r}; use one of: {', '.join(ACCELERATOR_TYPES)}"
        )
    return value


# --- the types ------------------------------------------------------------------------------


class ModelSource(ApiModel, json_schema_extra=cel_rules(*URI_RULES)):
    """Which model to serve and how clients name it."""

    uri: str = Field(
        min_length=6,
        max_length=2048,
        description="Where the weights are: hf://ORG/NAME, s3://BUCKET/PATH, gs://BUCKET/PATH, "
        "pvc://CLAIM/PATH, oci://REGISTRY/REPO:TAG or file:///PATH.",
    )
    revision: str | None = Field(
        default=None, max_length=256, description="Commit, branch or tag to pin (hf://)."
    )
    served_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$",
        description="What clients send as `model`; defaults to the URI's last segment.",
    )
    max_context_length: int = Field(
        default=4096, ge=128, le=1048576, description="Longest prompt + completion, in tokens."
    )
    parameter_count: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?[KMBT]?$",
        description="Size hint for memory estimation: 8B, 70B, 350M or 8030261248.",
    )

    @field_validator("uri")
    @classmethod
    def _uri_shape(cls, value: str) -> str:
        broken = uri_violation(value)
        if broken:
            raise RuleViolation(broken)
        return value

    @property
    def served_model_name(self) -> str:
        return self.served_name or served_name_from_uri(self.uri)

    @property
    def parameters(self) -> int | None:
        """The parameter-count hint as a number."""
        if self.parameter_count is None:
            return None
        match = re.fullmatch(r"([0-9.]+)([KMBT]?)", self.parameter_count)
        assert match is not None  # the field's pattern guarantees it
        return int(float(match.group(1)) * _PARAMETER_SUFFIX[match.group(2)])


class Batching(ApiModel, json_schema_extra=cel_rules(BATCH_COVERS_SEQUENCES)):
    """Continuous batching limits of each replica."""

    max_concurrent_sequences: int = Field(
        default=64, ge=1, le=4096, description="Sequences decoded together in one step."
    )
    max_batch_tokens: int = Field(
        default=8192, ge=16, le=1048576, description="Token budget of one engine step."
    )
    chunked_prefill: bool = Field(
        default=True, description="Split long prompts across steps so decodes keep flowing."
    )

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.max_batch_tokens < self.max_concurrent_sequences:
            raise RuleViolation(BATCH_COVERS_SEQUENCES)
        return self


class ResponseCache(ApiModel):
    """Exact-match cache of whole responses to deterministic requests (opt-in)."""

    enabled: bool = False
    ttl_seconds: int = Field(default=300, ge=1, le=604800)
    max_entries: int = Field(default=10000, ge=1, le=10_000_000)


class Cache(ApiModel):
    prefix: bool = Field(default=True, description="Reuse KV blocks of shared prompt prefixes.")
    response: ResponseCache = Field(default_factory=ResponseCache)


class Optimization(ApiModel):
    quantization: Quantization = Field(
        default="auto",
        description="Weight precision; auto picks the least lossy one that fits the accelerator.",
    )
    kv_cache_dtype: KvCacheDtype = Field(default="auto", description="KV cache precision.")
    batching: Batching = Field(default_factory=Batching)
    cache: Cache = Field(default_factory=Cache)


class Fallback(ApiModel):
    """An alternative accelerator, tried in order when the primary cannot be scheduled."""

    type: str = _accelerator_type("Accelerator type from the GPU catalog.")
    count: int = Field(default=1, ge=1, le=16, description="Accelerators per replica.")
    quantization: Quantization | None = Field(
        default=None, description="Overrides optimization.quantization on this fallback."
    )

    @field_validator("type")
    @classmethod
    def _type_known(cls, value: str) -> str:
        return _known_accelerator(value)


class Accelerator(
    ApiModel, json_schema_extra=cel_rules(FALLBACKS_DISTINCT, FALLBACKS_DIFFER_FROM_PRIMARY)
):
    """The accelerator of each replica, its ordered fallbacks and the capacity type."""

    type: str = _accelerator_type("Accelerator type from the GPU catalog, or cpu.")
    count: int = Field(
        default=1, ge=1, le=16, description="Accelerators per replica (tensor parallel)."
    )
    fallbacks: list[Fallback] = Field(default_factory=list, max_length=4)
    capacity: CapacityType = Field(
        default="on-demand",
        description="on-demand, spot, or spot-preferred (spot when there is some).",
    )

    @field_validator("type")
    @classmethod
    def _type_known(cls, value: str) -> str:
        return _known_accelerator(value)

    @model_validator(mode="after")
    def _rules(self) -> Self:
        keys = [(f.type, f.count) for f in self.fallbacks]
        if (self.type, self.count) in keys:
            raise RuleViolation(FALLBACKS_DIFFER_FROM_PRIMARY)
        if len(keys) != len(set(keys)):
            raise RuleViolation(FALLBACKS_DISTINCT)
        return self


class Replicas(ApiModel, json_schema_extra=cel_rules(MIN_NOT_ABOVE_MAX)):
    min: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Fewest replicas. 0 scales to zero when idle (autoscaling.mode builtin): "
        "requests are then held by llm-gateway, which wakes the deployment.",
    )
    max: int = Field(default=1, ge=1, le=1000, description="Most replicas.")
    # Always present (default 1): the scale subresource's specReplicasPath points here, and
    # the API server answers 500 to GET .../scale when that field is missing.
    desired: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Replicas when autoscaling.mode is none; the scale subresource (kubectl "
        "scale, HPA) reads and writes it. Clamped to [min, max].",
    )

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.min > self.max:
            raise RuleViolation(MIN_NOT_ABOVE_MAX)
        return self


class Budget(ApiModel):
    max_dollars_per_hour: float = Field(
        gt=0, le=1_000_000, description="Ceiling on the deployment's $/h; caps the replicas."
    )


class AdvancedAutoscaling(ApiModel, json_schema_extra=cel_rules(PERCENTILE_NEEDS_WINDOW)):
    """Knobs of the builtin autoscaler that most deployments should leave alone.

    Each was added while tuning the replay (docs/benchmarks/autoscale_replay.md); judged on
    held-out load none of them buys a consistent saving (cheaper at one SLO level, dearer or
    equal at another), so they live here with defaults that are right for most users.
    """

    target_running_per_replica: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="Running requests at which a replica counts as full. Lower buys capacity "
        "before batches grow (faster tokens, more replicas). Unset: an eighth of "
        "optimization.batching.maxConcurrentSequences.",
    )
    target_prompt_tokens_per_second: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="Prompt tokens per second one replica should prefill: also scale on prefill "
        "load (long prompts, short answers). Unset: scale on queue and running requests only.",
    )
    load_average_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Size for the load averaged over this window (cheaper on bursty traffic, "
        "slower to follow a burst); 0 sizes for the load of each scrape.",
    )
    load_percentile: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Size for this percentile of the load over the loadAverageSeconds window "
        "instead of its mean (90: the level recent bursts keep reaching, not the rare "
        "biggest). Unset: the mean.",
    )
    load_signal: LoadSignal = Field(
        default="peak",
        description="peak: each scrape's queued and running requests, or their average since "
        "the last scrape (from the pods' counters) when larger, so a burst between two scrapes "
        "counts; sampled: the scraped gauges alone (what KubeAI and KEDA see): cheaper, blind "
        "to bursts shorter than a scrape interval.",
    )

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.load_percentile is not None and self.load_average_seconds <= 0:
            raise RuleViolation(PERCENTILE_NEEDS_WINDOW)
        return self


class Autoscaling(ApiModel):
    mode: AutoscalingMode = Field(
        default="builtin",
        description="builtin: the operator scales; keda: a KEDA ScaledObject; none: fixed.",
    )
    target_queue_depth: int = Field(
        default=4, ge=1, le=10000, description="Waiting requests per replica to aim for."
    )
    scale_up_stabilization_seconds: int = Field(default=30, ge=0, le=3600)
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=86400)
    budget: Budget | None = None
    advanced: AdvancedAutoscaling = Field(
        default_factory=AdvancedAutoscaling,
        description="Builtin-autoscaler knobs most deployments leave at their defaults "
        "(docs/autoscaling.md, 'Advanced knobs').",
    )


class EnvVar(ApiModel, json_schema_extra=cel_rules(ENV_ONE_SOURCE)):
    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=256)
    value: str | None = None
    value_from: dict[str, Any] | None = Field(
        default=None, description="As a container's env[].valueFrom."
    )

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.value is not None and self.value_from is not None:
            raise RuleViolation(ENV_ONE_SOURCE)
        return self


class Resources(ApiModel):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class SecretKeySelector(ApiModel):
    """One key of a Secret in the LLMDeployment's namespace."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
    )
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)


class Server(ApiModel, json_schema_extra=cel_rules(ENV_UNIQUE, API_KEY_ONE_SOURCE)):
    """How the llm-server container runs; podTemplate is the escape hatch."""

    image: str | None = Field(default=None, max_length=512, description="Overrides the image.")
    args: list[str] = Field(default_factory=list, max_length=64, description="Extra arguments.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    api_key_secret: SecretKeySelector | None = Field(
        default=None,
        description="Turns on API keys: the Secret key holding them (comma-separated for "
        f"several), given to llm-server as {API_KEY_ENV}. Clients then send "
        "`Authorization: Bearer KEY` on /v1/*; /health, /ready and /metrics stay open.",
    )
    resources: Resources | None = Field(
        default=None, description="Overrides the CPU and memory the operator derives."
    )
    pod_template: dict[str, Any] | None = Field(
        default=None,
        description="Strategic-merge patch applied last to the generated pod template.",
    )

    @model_validator(mode="after")
    def _rules(self) -> Self:
        names = [e.name for e in self.env]
        if len(names) != len(set(names)):
            raise RuleViolation(ENV_UNIQUE)
        if self.api_key_secret is not None and API_KEY_ENV in names:
            raise RuleViolation(API_KEY_ONE_SOURCE)
        return self


class InferencePoolOption(ApiModel):
    """Render a Gateway API Inference Extension InferencePool (inference.networking.k8s.io/v1)
    over this deployment's pods, for an inference gateway (kgateway, Istio, GKE Gateway) that
    routes through its own endpoint picker instead of llm-gateway (docs/gateway.md)."""

    endpoint_picker: str = Field(
        pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="The endpoint picker's (EPP) Service, in the LLMDeployment's namespace.",
    )
    endpoint_picker_port: int = Field(
        default=9002, ge=1, le=65535, description="Its ext-proc (gRPC) port."
    )
    failure_mode: FailureMode = Field(
        default="FailClose",
        description="When the endpoint picker does not answer: FailClose refuses the request, "
        "FailOpen lets the gateway pick a pod itself.",
    )


class LLMDeploymentSpec(
    ApiModel,
    json_schema_extra=cel_rules(
        FP8_NEEDS_SUPPORT,
        FALLBACK_FP8_NEEDS_SUPPORT,
        UNCHUNKED_PREFILL_FITS,
        SCALE_TO_ZERO_NOT_WITH_KEDA,
    ),
):
    """What to serve, on what, within which limits and budget."""

    model: ModelSource
    optimization: Optimization = Field(default_factory=Optimization)
    accelerator: Accelerator
    replicas: Replicas = Field(default_factory=Replicas)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    server: Server = Field(default_factory=Server)
    inference_pool: InferencePoolOption | None = Field(
        default=None,
        description="Opt-in: an InferencePool over the pods for an inference gateway of the "
        "Gateway API Inference Extension (skipped while its CRD is not installed).",
    )

    @model_validator(mode="after")
    def _rules(self) -> Self:
        quantization = self.optimization.quantization
        if quantization == "fp8" and self.accelerator.type not in FP8_ACCELERATORS:
            raise RuleViolation(FP8_NEEDS_SUPPORT)
        for fallback in self.accelerator.fallbacks:
            if (fallback.quantization or quantization) == "fp8" and (
                fallback.type not in FP8_ACCELERATORS
            ):
                raise RuleViolation(FALLBACK_FP8_NEEDS_SUPPORT)
        batching = self.optimization.batching
        if not batching.chunked_prefill and (
            batching.max_batch_tokens < self.model.max_context_length
        ):
            raise RuleViolation(UNCHUNKED_PREFILL_FITS)
        if self.autoscaling.mode == "keda" and self.replicas.min < 1:
            raise RuleViolation(SCALE_TO_ZERO_NOT_WITH_KEDA)
        return self
