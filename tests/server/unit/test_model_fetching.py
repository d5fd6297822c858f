"""--model URIs become local directories: the Hub cache (offline), object stores via fsspec."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from llm_server.config import ConfigError, ServerConfig
from llm_server.model_source import COMPLETE_MARKER, ModelFetchError, local_model_dir
from llm_server.models.loader import load_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline Hugging Face cache; the Hub itself is never contacted."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _seed_hub_cache(cache: Path, repo: str, model_dir: Path, ref: str = "main") -> Path:
    """The layout huggingface_hub writes: refs/<ref> names a snapshot directory."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / ref).write_text(COMMIT)
    return snapshot


def test_hf_uri_resolves_to_the_cached_snapshot_and_loads(
    hub_cache: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    snapshot = _seed_hub_cache(hub_cache, "acme/tiny-chat", tiny_model_dir)
    path = local_model_dir("hf://acme/tiny-chat", None, tmp_path / "cache")
    assert path.resolve() == snapshot.resolve()
    loaded = load_model(str(path), "fp32", "cpu")
    assert loaded.model is not None


def test_hf_revision_selects_the_pinned_snapshot(
    hub_cache: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    snapshot = _seed_hub_cache(hub_cache, "acme/tiny-chat", tiny_model_dir, ref="v1")
    assert local_model_dir("hf://acme/tiny-chat", "v1", tmp_path).resolve() == snapshot.resolve()
    with pytest.raises(ModelFetchError, match="not in the local cache"):
        local_model_dir("hf://acme/tiny-chat", None, tmp_path)  # no refs/main


def test_hf_uri_not_cached_while_offline_is_a_clear_error(hub_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match=r"hf://acme/missing: not in the local cache"):
        local_model_dir("hf://acme/missing", None, tmp_path)


@pytest.fixture
def memory_store(tiny_model_dir: Path) -> Iterator[fsspec.AbstractFileSystem]:
    """fsspec's in-memory filesystem stands in for a bucket (same code path as s3fs/gcsfs)."""
    fs = fsspec.filesystem("memory")
    for file in tiny_model_dir.iterdir():
        fs.pipe(f"/bucket/models/tiny/{file.name}", file.read_bytes())
    yield fs
    if fs.exists("/bucket"):
        fs.rm("/bucket", recursive=True)


def test_object_store_uri_is_copied_once_into_the_cache(
    memory_store: fsspec.AbstractFileSystem, tiny_model_dir: Path, tmp_path: Path
) -> None:
    path = local_model_dir("memory://bucket/models/tiny", None, tmp_path)
    assert path == tmp_path / "models" / "memory" / "bucket/models/tiny"
    for file in tiny_model_dir.iterdir():
        assert (path / file.name).read_bytes() == file.read_bytes()
    assert (path / COMPLETE_MARKER).is_file()
    memory_store.rm("/bucket", recursive=True)  # a second start does not download again
    assert local_model_dir("memory://bucket/models/tiny", None, tmp_path) == path


def test_interrupted_copy_is_not_taken_for_a_model(
    memory_store: fsspec.AbstractFileSystem, tiny_model_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "models" / "memory" / "bucket/models/tiny"
    target.mkdir(parents=True)  # left by a crash before the marker was written
    (target / "config.json").write_text("{}")
    path = local_model_dir("memory://bucket/models/tiny", None, tmp_path)
    for file in tiny_model_dir.iterdir():
        assert (path / file.name).read_bytes() == file.read_bytes()
    assert (path / COMPLETE_MARKER).is_file()


def test_object_store_errors_name_the_problem(
    memory_store: fsspec.AbstractFileSystem, tmp_path: Path
) -> None:
    with pytest.raises(ModelFetchError, match="no such directory"):
        local_model_dir("memory://bucket/models/absent", None, tmp_path)
    memory_store.pipe("/bucket/models/weights-only/model.safetensors", b"x")
    with pytest.raises(ModelFetchError, match=r"no config\.json"):
        local_model_dir("memory://bucket/models/weights-only", None, tmp_path)
    assert not (tmp_path / "models" / "memory" / "bucket/models/weights-only").exists()


def test_missing_storage_package_and_oci_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match=r"needs gcsfs|needs .*gs"):
        local_model_dir("gs://bucket/models/llama", None, tmp_path)
    with pytest.raises(ModelFetchError, match="image volume"):
        local_model_dir("oci://registry.example.com/models/llama:8b", None, tmp_path)


def test_config_accepts_uris_and_names_them_by_their_last_segment(tmp_path: Path) -> None:
    assert ServerConfig(model="hf://acme/tiny-chat").model_name == "acme/tiny-chat"
    assert ServerConfig(model="s3://bucket/models/llama-8b/").model_name == "llama-8b"
    with pytest.raises(ConfigError, match=r"no config\.json"):
        ServerConfig(model=str(tmp_path))
