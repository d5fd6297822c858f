"""A real Prometheus (Debian's package) on loopback, scraping the jobs a test gives it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from running_server import free_port

PROMETHEUS = shutil.which("prometheus")


@contextlib.contextmanager
def running_prometheus(
    scrape_configs: list[dict[str, Any]],
    workdir: Path,
    rule_files: Sequence[Path] = (),
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Its base URL, scraping and evaluating every second; its log is workdir/prometheus.log.
    The config is checked with promtool first, so a bad one fails with promtool's words.
    Its storage is workdir/data (a test may put backfilled blocks there first)."""
    assert PROMETHEUS, "prometheus is not installed: apt-get install prometheus (see .ci/run)"
    config = workdir / "prometheus.yml"
    settings = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": scrape_configs,
    }
    config.write_text(yaml.safe_dump(settings))
    check = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", *extra_args],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
