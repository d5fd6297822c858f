"""What the operator scale benchmark observes: a process's CPU and peak RSS from /proc, the
LLMDeployments' progress from a watch, the Deployments' rollouts, and a pool of clients."""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # tests/support, on sys.path when operator_scale.py runs
    from kube_client import Kube


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


class Watcher(threading.Thread):
    """Watches the LLMDeployments: when each first had a status, a ready replica, and a
    status of generation 2."""

    def __init__(self, kube: Kube, path: str) -> None:
        super().__init__(name="llmd-watch", daemon=True)
        self.kube, self.path, self.stop = kube, path, threading.Event()
        self.status: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.changed: dict[str, float] = {}

    def run(self) -> None:
        version_ = ""
        while not self.stop.is_set():
            try:
                if not version_:
                    listing = self.kube.request("GET", self.path)
                    for item in listing.get("items") or []:
                        self._see(item)
                    version_ = listing["metadata"]["resourceVersion"]
                for event in self.kube.watch(self.path, version_, timeout_s=30):
                    if event["type"] == "ERROR":
                        version_ = ""
                        break
                    version_ = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._see(event["object"])
            except Exception as exc:  # a benchmark: log, re-list, go on
                print(f"watch: {exc}", file=sys.stderr)
                version_ = ""
                time.sleep(0.5)

    def _see(self, obj: dict[str, Any]) -> None:
        name, status, now = obj["metadata"]["name"], obj.get("status") or {}, time.monotonic()
        if status:
            self.status.setdefault(name, now)
        if (status.get("readyReplicas") or 0) >= 1:
            self.ready.setdefault(name, now)
        if (status.get("observedGeneration") or 0) >= 2:
            self.changed.setdefault(name, now)


def until(table: dict[str, float], count: int, since: float, limit: float) -> float | None:
    while len(table) < count:
        if time.monotonic() - since > limit:
            return None
        time.sleep(0.2)
    return round(max(table.values()) - since, 2)


def until_rolled_out(
    kube: Kube, namespace: str, count: int, since: float, limit: float
) -> float | None:
    """Until every Deployment runs its new pods only (so the steady phase is steady)."""

    def done(d: dict[str, Any]) -> bool:
        spec, status = d["spec"], d.get("status") or {}
        wanted = spec.get("replicas", 1)
        return bool(
            status.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == wanted
            and status.get("readyReplicas", 0) == wanted
            and status.get("replicas", 0) == wanted
        )

    while time.monotonic() - since <= limit:
        items = kube.list("apps/v1", "Deployment", namespace)
        if len(items) >= count and all(done(d) for d in items):
            return round(time.monotonic() - since, 2)
        time.sleep(2)
    return None


def parallel(work: list[Any], fn: Any, clients: list[Kube]) -> None:
    local = threading.local()
    pool = iter(clients)
    lock = threading.Lock()

    def call(item: Any) -> None:
        if not hasattr(local, "kube"):
            with lock:
                local.kube = next(pool)
        fn(local.kube, item)

    with ThreadPoolExecutor(len(clients)) as executor:
        list(executor.map(call, work))
