"""GGUF as a model source: what is refused (one line, exit 1), how tensors come back, and
hf://ORG/NAME/FILE.gguf. Small GGUF files are written here with the `gguf` package's writer."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter, quants

from llm_server.cli import main
from llm_server.config import ServerConfig
from llm_server.gguf_file import GgufError, summarize
from llm_server.model_source import ModelFetchError, local_model_dir, split_hub_uri
from llm_server.models.gguf_checkpoint import gguf_weights

ROWS, COLS = 8, 64  # COLS: a multiple of every block size (32 values per Q4/Q8 block)
# Worst error after a round trip through each type, relative to the values' max (|x| <= ~4).
TOLERANCE = {"F32": 0.0, "F16": 1e-3, "BF16": 1e-2, "Q8_0": 1e-2, "Q4_1": 0.1, "Q4_0": 0.15}


def _write(path: Path, arch: str, tensors: dict[str, tuple[np.ndarray, str]]) -> Path:
    """A GGUF file of `arch` holding each tensor quantized to its named type."""
    writer = GGUFWriter(path, arch)
    writer.add_block_count(1)
    writer.add_name("test model")
    for name, (values, kind) in tensors.items():
        qtype = GGMLQuantizationType[kind]
        if kind == "F32":
            writer.add_tensor(name, values.astype(np.float32))
        else:
            data = quants.quantize(values.astype(np.float32), qtype)
            writer.add_tensor(name, data, raw_dtype=qtype)  # shape: from the bytes
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _values(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((ROWS, COLS)).astype(np.float32)


def _one_line_exit_1(capsys: pytest.CaptureFixture[str], path: Path, expected: str) -> None:
    assert main(["--model", str(path), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("llm-server: error: ") and expected in err


@pytest.mark.parametrize("kind", sorted(TOLERANCE))
def test_each_tensor_type_dequantizes_to_its_values(tmp_path: Path, kind: str) -> None:
    """qwen2 (no rotary permutation): what comes back is the written tensor, under our name."""
    values = _values(1)
    path = _write(tmp_path / "m.gguf", "qwen2", {"blk.0.ffn_up.weight": (values, kind)})
    config = SimpleNamespace(num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1)
    [(name, tensor)] = list(gguf_weights(path, config))
    assert name == "model.layers.0.mlp.up_proj.weight"
    assert tensor.shape == (ROWS, COLS) and tensor.is_contiguous()
    error = float(np.abs(tensor.numpy() - values).max() / np.abs(values).max())
    assert error <= TOLERANCE[kind]


def test_llama_q_and_k_rows_are_unpermuted(tmp_path: Path) -> None:
    """llama.cpp interleaves each head's rotary halves in attn_q/attn_k; loading undoes it."""
    heads, head_dim = 2, 4
    written = np.arange(heads * head_dim * COLS, dtype=np.float32).reshape(-1, COLS)
    path = _write(tmp_path / "m.gguf", "llama", {"blk.0.attn_q.weight": (written, "F32")})
    config = SimpleNamespace(num_hidden_layers=1, num_attention_heads=heads, num_key_value_heads=2)
    [(name, tensor)] = list(gguf_weights(path, config))
    assert name == "model.layers.0.self_attn.q_proj.weight"
    # Head 0 rows as written: [0, 1, 2, 3] = (pair 0 even, pair 0 odd, pair 1 even, pair 1 odd).
    first_column = tensor[:head_dim, 0].tolist()
    assert first_column == [0.0, 2 * COLS, 1 * COLS, 3 * COLS]


def test_summary_counts_parameters_and_types(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.gguf", "llama", {
        "blk.0.ffn_up.weight": (_values(1), "Q4_1"),
        "blk.0.attn_norm.weight": (np.ones((1, COLS)), "F32"),
    })  # fmt: skip
    summary = summarize(path)
    assert summary.hf_architecture == "LlamaForCausalLM"
    assert summary.parameters == ROWS * COLS + COLS
    assert summary.tensor_types == ("Q4_1", "F32")


def test_unsupported_architecture_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "gpt2.gguf", "gpt2", {"blk.0.ffn_up.weight": (_values(1), "F16")})
    _one_line_exit_1(capsys, path, "GGUF architecture 'gpt2' is not supported")


def test_unsupported_tensor_type_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ints = np.zeros((ROWS, COLS), dtype=np.int32)
    writer = GGUFWriter(tmp_path / "i32.gguf", "llama")
    writer.add_tensor("blk.0.ffn_up.weight", ints, raw_dtype=GGMLQuantizationType.I32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    _one_line_exit_1(capsys, tmp_path / "i32.gguf", "has type I32, which llm-server cannot")


def test_truncated_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = _write(tmp_path / "m.gguf", "llama", {"blk.0.ffn_up.weight": (_values(1), "Q8_0")})
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size - 100])
    _one_line_exit_1(capsys, cut, "truncated")


def test_missing_file_and_not_gguf_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_line_exit_1(capsys, tmp_path / "absent.gguf", "no such file")
    (tmp_path / "text.gguf").write_text("hello, not a model")
    _one_line_exit_1(capsys, tmp_path / "text.gguf", "not a GGUF file")
    with pytest.raises(GgufError):
        summarize(tmp_path / "text.gguf")


def test_a_gguf_file_is_the_model_not_a_directory(tmp_path: Path) -> None:
    config = ServerConfig(model=str(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert config.model_is_gguf_file and not config.model_is_dir
    assert config.served_model_names == ("SmolLM2-135M-Instruct.Q4_1",)


def test_hub_uri_may_name_one_gguf_file() -> None:
    assert split_hub_uri("hf://org/repo") == ("org/repo", None)
    assert split_hub_uri("hf://org/repo-GGUF/m.Q4_0.gguf") == ("org/repo-GGUF", "m.Q4_0.gguf")
    with pytest.raises(ModelFetchError, match=r"hf://ORG/NAME/FILE\.gguf"):
        split_hub_uri("hf://org/repo/sub/dir")


def test_hub_gguf_file_comes_from_the_offline_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one file is resolved through huggingface_hub's cache; the Hub is never contacted."""
    import huggingface_hub.constants as constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    root = tmp_path / "hub" / "models--org--repo-GGUF"
    (root / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(
        _write(tmp_path / "m.gguf", "llama", {"blk.0.ffn_up.weight": (_values(1), "F16")}),
        root / "snapshots" / commit / "m.Q4_0.gguf",
    )
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    path = local_model_dir("hf://org/repo-GGUF/m.Q4_0.gguf", None, tmp_path / "cache")
    assert path.name == "m.Q4_0.gguf" and summarize(path).architecture == "llama"
