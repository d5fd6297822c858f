"""pytest fixtures for the real control plane (registered by the repository's conftest.py).

- `control_plane` (session): etcd + kube-apiserver + controller-manager + scheduler, started
  on first use. Missing binaries fail the test in CI (`CI` set) and skip it elsewhere with the
  reason, so a developer without them still sees what was not run.
- `kube` (session): an admin client, with the project's CRDs applied and established.
- `kubelet` (session): the fake kubelet; tests put a PodRuntime in `kubelet.runtimes`.
- `namespace` (function): a fresh namespace per test, deleted after it.
- `nodes` (function): registers Nodes for one test and deletes them after it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from control_plane import ControlPlane, ControlPlaneUnavailable
from fake_kubelet import FakeKubelet, register_node
from kube_client import Kube

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
_names = itertools.count(1)


def crd_manifests(directory: Path = CRD_DIR) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def install_crds(kube: Kube, directory: Path = CRD_DIR) -> None:
    manifests = crd_manifests(directory)
    for crd in manifests:
        kube.apply(crd)
    for crd in manifests:
        kube.wait_established(crd["metadata"]["name"])


def start_control_plane(workdir: Path, **kwargs: Any) -> ControlPlane:
    try:
        return ControlPlane(workdir, **kwargs).start()
    except ControlPlaneUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"real control plane unavailable in CI: {exc}")
        pytest.skip(f"real control plane unavailable: {exc}")


def admin_client(plane: ControlPlane) -> Kube:
    return Kube(plane.url, str(plane.ca_file), cert=plane.admin_cert())


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    client = admin_client(control_plane)
    install_crds(client)
    yield client
    client.close()


@pytest.fixture(scope="session")
def kubelet(control_plane: ControlPlane, kube: Kube) -> Iterator[FakeKubelet]:
    with FakeKubelet(admin_client(control_plane)) as running:
        yield running


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    base = request.node.name.lower().replace("_", "-")
    name = f"t{next(_names)}-" + "".join(c for c in base if c.isalnum() or c == "-")[:40]
    name = name.rstrip("-")
    kube.ensure_namespace(name)
    yield name
    kube.delete("v1", "Namespace", name)


@pytest.fixture
def nodes(kube: Kube) -> Iterator[Callable[..., dict[str, Any]]]:
    """register(name, labels=..., capacity=..., taints=...) for this test only."""
    registered: list[str] = []

    def register(name: str, **kwargs: Any) -> dict[str, Any]:
        registered.append(name)
        return register_node(kube, name, **kwargs)

    yield register
    for name in registered:
        kube.delete("v1", "Node", name)
