"""gateway/Dockerfile: the [gateway] extra only (no torch, kopf or server code), non-root.

No Docker engine here, so the file is read, not built: these are the properties the chart relies
on (UID 10001, the llm-gateway entry point in --kube mode) and the ones that keep it slim.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "gateway" / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_installs_only_the_gateway_extra_and_no_server_code() -> None:
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    installs = [t for t in re.findall(r"pip install (?:--\S+ )*(\S+)", runs) if t != "pip"]
    assert installs == ['".[gateway]"'], installs
    copies = [rest for word, rest in instructions() if word == "COPY"]
    assert not any("server_image" in c for c in copies)
    extra = " ".join(PYPROJECT["project"]["optional-dependencies"]["gateway"])
    assert "aiohttp" in extra and "kopf" not in extra and "torch" not in extra


def test_runs_llm_gateway_in_kube_mode_as_uid_10001() -> None:
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert [rest for word, rest in instructions() if word == "ENTRYPOINT"] == ['["llm-gateway"]']
    assert [rest for word, rest in instructions() if word == "CMD"] == ['["--kube"]']
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts["llm-gateway"] == "llm_gateway.__main__:main"
