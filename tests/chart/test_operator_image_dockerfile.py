"""operator/Dockerfile: the operator's extras only (never torch or the server), non-root.

No Docker engine here, so the file is read, not built: these are the properties the chart
relies on (a non-root UID, the llm-operator entry point) and the one that keeps it slim.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "operator" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_installs_only_the_operator_extras() -> None:
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    installs = re.findall(r"pip install (?:--\S+ )*(\S+)", runs)
    targets = [t for t in installs if t != "pip"]
    assert targets == ['".[operator]"'], targets
    assert "torch" not in runs and "[server" not in runs
    copies = [rest for word, rest in instructions() if word == "COPY"]
    assert not any("server_image/src" in c for c in copies), "the server's code stays out"
    server_deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["server"]
    assert any(d.startswith("torch") for d in server_deps)  # what [operator] keeps out


def test_runs_as_the_chart_s_non_root_user() -> None:
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    values = (ROOT / "charts" / "llm-operator" / "values.yaml").read_text()
    assert "runAsUser: 10001" in values
    entrypoint = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    assert entrypoint == ['["llm-operator"]']


def test_build_context_leaves_out_the_heavy_folders() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests", "benchmarks"} <= set(ignored)
