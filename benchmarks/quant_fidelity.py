"""Weight quantization on CPU: how far each precision moves the model, and what it saves.

Fidelity. A small Llama (about 2.6M parameters, 512-token BPE vocabulary) is trained for 120
steps on text generated here from a seeded word-level Markov chain (each word has a few
likely successors), so its weights carry structure rather than uniform noise and its
next-token distributions depend on context. It is saved in Hugging Face format and loaded
through llm-server's own loader at every precision: none (fp32), int8, int4 with groups of
32/64/128 (and fp8 where a Hopper/Ada GPU is present). On a fixed set of held-out prompts, at
every position, the next-token distribution of each precision is compared with the
unquantized model's: mean and p95 KL(unquantized || quantized) in nats, top-1 agreement, and
each precision's own loss on the held-out text.

Memory. The server benchmarks' 31M-parameter random-weight Llama (bench_common) is served by
real `llm-server` processes at none / int8 / int4 (and from a directory pre-quantized by
`llm-server quantize`); reported: the loader's resident weight bytes (parameters + buffers),
the process RSS once ready and its peak (VmHWM).

Writes docs/benchmarks/quant_fidelity.{json,md}.

    python benchmarks/quant_fidelity.py            # the full run (a few minutes on 2 cores)
    python benchmarks/quant_fidelity.py --quick    # a smoke run, written to /tmp
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch
import torch.nn.functional as F
import transformers

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)
from llm_server.layers.attention import AttentionMetadata, PrefillSegment
from llm_server.models.loader import LoadedModel, load_model, quantizable_linears, weight_bytes
from llm_server.quantization.checkpoint import save_quantized
from llm_server.quantization.scheme import QuantScheme
from llm_server.tiny_model import WORDS, build_tiny_model

REPO = Path(__file__).resolve().parents[1]
FIDELITY_SIZES = {
    "vocab_size": 512,
    "hidden_size": 256,
    "intermediate_size": 512,  # divisible by every int4 group size
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "initializer_range": 0.02,
}
PRECISIONS = [("none", None), ("int8", None), ("int4", 32), ("int4", 64), ("int4", 128)]
SEQ_LEN = 64
BATCH = 12


def markov_text(seed: int, num_lines: int) -> list[str]:
    """Sentences from a seeded word-level Markov chain: each word has four likely successors."""
    rng = random.Random(seed)
    chain_rng = random.Random(1234)  # the chain itself is fixed; `seed` picks the walks
    successors = {w: chain_rng.sample(WORDS, 4) for w in WORDS}
    lines = []
    for _ in range(num_lines):
        word = rng.choice(WORDS)
        words = [word]
        for _ in range(rng.randint(6, 16)):
            word = rng.choice(successors[word]) if rng.random() < 0.9 else rng.choice(WORDS)
            words.append(word)
        lines.append(" ".join(words) + ".")
    return lines


def train(model_dir: Path, steps: int, seed: int) -> dict[str, float]:
    """Train the saved model in place (transformers' Llama, AdamW); returns first/last loss."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = tokenizer(" ".join(markov_text(seed, 6000))).input_ids
    data = torch.tensor(ids[: len(ids) // SEQ_LEN * SEQ_LEN]).view(-1, SEQ_LEN)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps):
        batch = data[torch.randint(0, data.shape[0], (BATCH,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.save_pretrained(model_dir, safe_serialization=True)
    return {"first_loss": losses[0], "last_loss": sum(losses[-10:]) / 10, "steps": steps}


def _log_probs(loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    n = len(ids)
    meta = AttentionMetadata(slot_mapping=None, prefills=[PrefillSegment(0, n, n, None)])
    with torch.inference_mode():
        hidden = loaded.model(torch.tensor(ids, device=loaded.device),
                              torch.arange(n, device=loaded.device), meta)  # fmt: skip
        return F.log_softmax(loaded.model.compute_logits(hidden).float(), dim=-1).cpu()


def fidelity(model_dir: Path, prompts: list[list[int]], device: str) -> list[dict[str, Any]]:
    precisions = list(PRECISIONS)
    if device == "cuda" and torch.cuda.get_device_capability() >= (8, 9):
        precisions.append(("fp8", None))
    dtype = "fp32"
    reference = load_model(model_dir, dtype, device)
    ref = [_log_probs(reference, p) for p in prompts]
    rows = []
    for method, group in precisions:
        loaded = load_model(model_dir, dtype, device, quantization=method, quant_group_size=group)
        kls, agree, nll, count = [], 0, 0.0, 0
        for prompt, expected in zip(prompts, ref, strict=True):
            got = _log_probs(loaded, prompt)
            kls.append(F.kl_div(got, expected, log_target=True, reduction="none").sum(-1))
            agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
            targets = torch.tensor(prompt[1:])
            nll += float(-got[:-1].gather(1, targets[:, None]).sum())
            count += len(prompt)
        kl = torch.cat(kls)
        layers = quantizable_linears(loaded.model).values()
        projection_bytes = sum(t.nbytes for layer in layers for t in (
            [layer.weight, layer.weight_scale] if layer.quant else [layer.weight]))  # fmt: skip
        rows.append({
            "precision": QuantScheme(method, group).label,
            "kl_mean_nats": float(kl.mean()),
            "kl_p95_nats": float(kl.quantile(0.95)),
            "top1_agreement": agree / count,
            "heldout_loss_nats": nll / (count - len(prompts)),
            "weight_bytes": weight_bytes(loaded.model),
            "projection_weight_bytes": projection_bytes,
            "positions": count,
        })  # fmt: skip
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def serve_and_measure(model_dir: Path, args: list[str], log_path: Path) -> dict[str, Any]:
    """Start llm-server, wait until ready, serve one completion, read its memory, stop it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "server_image" / "src")}
    command = [sys.executable, "-m", "llm_server", "--model", str(model_dir), "--port",
               str(port), "--host", "127.0.0.1", "--device", "cpu", "--dtype", "fp32",
               "--num-kv-blocks", "64", *args]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(log_path.read_text())
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        body = {"model": model_dir.name, "prompt": "the cache", "max_tokens": 8}
        response = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=60)
        response.raise_for_status()
        rss, peak = _status_kib(process.pid, "VmRSS"), _status_kib(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.wait(timeout=60)
    match = re.search(
        r"weights: quantization (\S+).*?; ([\d.]+) MiB resident", log_path.read_text()
    )
    assert match, log_path.read_text()
    return {"quantization": match.group(1), "weight_mib": float(match.group(2)),
            "rss_mib": rss / 1024, "peak_rss_mib": peak / 1024}  # fmt: skip


def memory(work: Path, quick: bool) -> dict[str, Any]:
    sizes = dict(bench_common.BENCH_LLAMA_SIZES)
    if quick:
        sizes.update(hidden_size=128, intermediate_size=256, num_hidden_layers=2)
    model_dir = build_tiny_model(work / "memory-model", **sizes)
    pre_quantized = work / "memory-model-int4"
    save_quantized(model_dir, pre_quantized, QuantScheme("int4"))
    runs = []
    for label, directory, args in [
        ("none", model_dir, []),
        ("int8", model_dir, ["--quantization", "int8"]),
        ("int4", model_dir, ["--quantization", "int4"]),
        ("int4 (pre-quantized dir)", pre_quantized, []),
    ]:
        run = serve_and_measure(directory, args, work / f"server-{len(runs)}.log")
        runs.append({"run": label, **run})
    parameters = sum(t.numel() for t in load_model(model_dir, "fp32", "cpu").model.parameters())
    return {"model_sizes": sizes, "parameters": parameters, "servers": runs}


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quant_fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
    m, t, mem = report["machine"], report["training"], report["memory"]
    lines = [
        "# Weight quantization: fidelity and memory (CPU)",
        "",
        f"{report['date']} · {m['cpu']} · {m['cores']} cores · torch {m['torch']} · "
        f"transformers {m['transformers']} · Python {m['python']} · device {report['device']}",
        "",
        "Generated by `benchmarks/quant_fidelity.py`; method in its docstring and in "
        "[../quantization.md](../quantization.md).",
        "",
        f"## Fidelity: a trained {report['fidelity_parameters'] / 1e6:.1f}M-parameter Llama",
        "",
        f"Trained {t['steps']} steps on locally generated Markov-chain text (loss "
        f"{t['first_loss']:.2f} → {t['last_loss']:.2f} nats). {report['prompts']} held-out "
        f"prompts, {report['fidelity'][0]['positions']} next-token distributions; KL is "
        "KL(unquantized ‖ quantized).",
        "",
        "| precision | mean KL (nats) | p95 KL (nats) | top-1 agreement | held-out loss (nats) "
        "| weight bytes (all) | projection bytes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["fidelity"]:
        lines.append(
            f"| {r['precision']} | {r['kl_mean_nats']:.5f} | {r['kl_p95_nats']:.5f} | "
            f"{r['top1_agreement']:.2%} | {r['heldout_loss_nats']:.4f} | "
            f"{r['weight_bytes']:,} | {r['projection_weight_bytes']:,} |"
        )
    lines += [
        "",
        f"## Memory: llm-server processes, {mem['parameters'] / 1e6:.1f}M-parameter random "
        "Llama, fp32 compute",
        "",
        "Weights: the loader's resident parameter + buffer bytes (embedding and lm_head stay "
        "fp32). RSS: the server process once ready and after one completion; peak: its VmHWM.",
        "",
        "| run | weights (MiB) | RSS (MiB) | peak RSS (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for s in mem["servers"]:
        lines.append(
            f"| {s['run']} ({s['quantization']}) | {s['weight_mib']:.1f} | {s['rss_mib']:.0f} | "
            f"{s['peak_rss_mib']:.0f} |"
        )
    (out_dir / "quant_fidelity.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, written to /tmp")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    steps = 20 if args.quick else args.steps
    out_dir = args.out or (Path("/tmp/quant_fidelity") if args.quick else REPO / "docs/benchmarks")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        model_dir = build_tiny_model(work / "fidelity-model", **FIDELITY_SIZES)
        started = time.monotonic()
        training = train(model_dir, steps, seed=0)
        training["seconds"] = time.monotonic() - started
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        prompts = [
            tokenizer(line).input_ids[:SEQ_LEN] for line in markov_text(99, 8 if args.quick else 48)
        ]
        rows = fidelity(model_dir, prompts, device)
        parameters = sum(t.numel() for t in load_model(model_dir, "fp32", "cpu").model.parameters())
        report = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": bench_common.machine(
                torch=torch.__version__, transformers=transformers.__version__
            ),
            "device": device,
            "fidelity_model_sizes": FIDELITY_SIZES,
            "fidelity_parameters": parameters,
            "training": training,
            "prompts": len(prompts),
            "fidelity": rows,
            "memory": memory(work, args.quick),
        }
    write_report(out_dir, report)
    print(f"wrote {out_dir / 'quant_fidelity.md'}")


if __name__ == "__main__":
    main()
