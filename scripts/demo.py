"""`make demo`: what exists today, end to end on this machine with no cluster.

Validates every example as the API server and the operator would, prices each against its
budget, and shows how a broken manifest is reported. (The server issue extends this to start
the CPU example locally and send it real OpenAI requests.)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLMOPS = str(Path(sys.executable).with_name("llmops"))
BROKEN = """\
apiVersion: inference.llmops.dev/v1alpha1
kind: LLMDeployment
metadata: {name: broken}
spec:
  model: {uri: "ftp://example.com/model"}
  optimization: {quantization: fp8}
  accelerator: {type: T4}
  replicas: {min: 4, max: 2}
"""


def run(*args: str) -> int:
    print(f"\n$ llmops {' '.join(args)}", flush=True)
    return subprocess.run([LLMOPS, *args], cwd=ROOT, check=False).returncode


def main() -> int:
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    if run("validate", *(a for e in examples for a in ("-f", e))) != 0:
        return 1
    if run("cost", *(a for e in examples for a in ("-f", e))) != 0:
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as broken:
        broken.write(BROKEN)
    print("\n# a broken manifest: validate names each offending field and how to fix it")
    if run("validate", "-f", broken.name) != 2:  # 2 means "invalid", which is expected here
        return 1
    print("\ndemo finished: examples valid, costs shown, the broken manifest was refused (exit 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
