"""Where `--model` points, turned into a local Hugging Face-format directory or GGUF file.

- a directory, or a `.gguf` file: used as it is;
- `tiny-random`: built once into the cache (the demo model);
- `hf://ORG/NAME`: downloaded from the Hugging Face Hub into its cache (`HF_HOME`), at
  `--revision` when given; `HF_TOKEN` for gated models; `HF_HUB_OFFLINE=1` uses the cache only;
- `hf://ORG/NAME/FILE.gguf`: that one file of the repository (a GGUF repository holds many
  quantizations of one model), through the same cache;
- `s3://`, `gs://` (any fsspec protocol whose package is installed: s3fs, gcsfs): copied once
  into `<cache-dir>/models/<protocol>/<bucket>/<path>`; a marker file says the copy finished,
  so a crash mid-copy is never mistaken for a model;
- `oci://`: refused here: the operator mounts OCI artifacts as an image volume and passes the
  mounted directory.

Fetching runs while the server is loading (liveness answers, readiness stays 503).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from llm_server.config import TINY_RANDOM

HF_PREFIX = "hf://"
COMPLETE_MARKER = ".llm-server-complete"
# What a checkpoint needs; other files in a repository (pytorch .bin, onnx, gguf) are skipped.
HF_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
FSSPEC_PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


class ModelFetchError(RuntimeError):
    """The model could not be made local; the message says why and what to do."""


def _is_fsspec_uri(model: str) -> bool:
    scheme, sep, _ = model.partition("://")
    return bool(sep) and scheme.isalnum() and scheme != "file"


def split_hub_uri(model: str) -> tuple[str, str | None]:
    """hf://ORG/NAME -> (ORG/NAME, None); hf://ORG/NAME/FILE.gguf -> (ORG/NAME, FILE.gguf)."""
    parts = model.removeprefix(HF_PREFIX).strip("/").split("/")
    if len(parts) == 3 and parts[2].lower().endswith(".gguf"):
        return f"{parts[0]}/{parts[1]}", parts[2]
    if len(parts) != 2 or not all(parts):
        raise ModelFetchError(f"--model {model}: expected hf://ORG/NAME or hf://ORG/NAME/FILE.gguf")
    return model.removeprefix(HF_PREFIX).strip("/"), None


def local_model_dir(model: str, revision: str | None, cache_dir: Path) -> Path:
    """A local directory holding the model's config, weights and tokenizer, or a GGUF file."""
    if model == TINY_RANDOM:
        from llm_server.tiny_model import ensure_tiny_model

        return ensure_tiny_model(cache_dir)
    if model.startswith(HF_PREFIX):
        repo_id, gguf_file = split_hub_uri(model)
        return _from_hub(repo_id, revision, gguf_file)
    if model.startswith("oci://"):
        raise ModelFetchError(
            f"--model {model}: OCI artifacts are mounted by the operator as an image volume; "
            "run llm-server with the mounted directory instead"
        )
    if _is_fsspec_uri(model):
        return _from_object_store(model, cache_dir)
    return Path(model)


def _from_hub(repo_id: str, revision: str | None, gguf_file: str | None = None) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        if gguf_file is not None:  # one file; the GGUF carries config and tokenizer itself
            return Path(hf_hub_download(repo_id, gguf_file, revision=revision))
        path = snapshot_download(repo_id, revision=revision, allow_patterns=HF_PATTERNS)
    except LocalEntryNotFoundError as exc:
        raise ModelFetchError(
            f"hf://{repo_id}: not in the local cache and the Hub cannot be reached "
            f"(offline, or HF_HUB_OFFLINE=1): {exc}"
        ) from exc
    except HfHubHTTPError as exc:
        raise ModelFetchError(
            f"hf://{repo_id}: the Hub refused the download ({exc}); check the name and "
            "revision, and set HF_TOKEN for gated or private repositories"
        ) from exc
    return _checked(Path(path), f"hf://{repo_id}")


def _from_object_store(uri: str, cache_dir: Path) -> Path:
    import fsspec

    protocol, _, remote = uri.partition("://")
    target = cache_dir / "models" / protocol / remote.strip("/")
    if (target / COMPLETE_MARKER).is_file():
        return target
    try:
        fs = fsspec.filesystem(protocol)
    except (ImportError, ValueError) as exc:
        package = FSSPEC_PACKAGES.get(protocol, f"the fsspec package for {protocol}://")
        raise ModelFetchError(
            f"--model {uri}: reading {protocol}:// needs {package} in the server image ({exc})"
        ) from exc
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        if not fs.isdir(remote):
            raise ModelFetchError(f"--model {uri}: no such directory")
        fs.get(remote.rstrip("/") + "/", str(partial), recursive=True)
    except ModelFetchError:
        raise
    except Exception as exc:
        raise ModelFetchError(f"--model {uri}: download failed: {exc}") from exc
    _checked(partial, uri)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    (target / COMPLETE_MARKER).touch()
    return target


def _checked(path: Path, source: str) -> Path:
    if not (path / "config.json").is_file():
        raise ModelFetchError(f"{source}: no config.json in the downloaded files")
    return path
