"""Where our server's time goes under load: py-spy's collapsed stacks, summed per function.

py-spy (`pip install py-spy`, outside the project's venv) samples the live server process
while a scenario runs; `--format raw` writes one line per distinct stack: "frame;frame;... N".
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

# py-spy frame: "function (path/to/file.py:123)"; the line number is dropped so a function's
# samples add up across its lines.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`forward (…/llm_server/layers/attention.py:88)` -> `attention.py:forward`."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{Path(match['file']).name}:{match['func']}"


def top_functions(collapsed: str, count: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Self (leaf) and inclusive (anywhere on the stack) shares of the samples, largest first."""
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        # --subprocesses puts a "process PID:command" frame at each stack's root.
        frames = [
            frame_name(f) for f in stack.split(";") if f.strip() and not f.startswith("process ")
        ]
        if not frames:
            continue
        total += n
        self_samples[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "self": [(name, n / total) for name, n in self_samples.most_common(count)],
        "inclusive": [(name, n / total) for name, n in inclusive.most_common(count)],
    }


def py_spy() -> str | None:
    return shutil.which("py-spy")


def record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """Starts sampling pid (and its subprocesses) for `seconds`; wait() on the result."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not on PATH")
    return subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50",
         "--subprocesses", "--nonblocking", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
