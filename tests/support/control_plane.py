"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler as local processes on loopback (the envtest idea, plus the two
controllers envtest leaves out, so Deployments get Pods, Pods get Nodes and owner references
get garbage-collected).

- Binaries: `$KUBEBUILDER_ASSETS` (envtest's convention: a directory with kube-apiserver, and
  here also kube-controller-manager and kube-scheduler), else the project's copies in
  `../shared/envtest/*.xz`, unpacked once into `~/.cache/llm-operator/envtest/<version>`.
  etcd: `$ETCD` or `etcd` on PATH (Debian's etcd-server).
- Credentials: one CA made with openssl, a serving certificate, client certificates for an
  admin (system:masters) and for the two controllers, an RSA key pair for service-account
  tokens. All state lives in one temporary directory; every process is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

ENVTEST_VERSION = "v1.36.2"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
SHARED_ENVTEST = Path(__file__).resolve().parents[3] / "shared" / "envtest"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llm-operator"
READY_TIMEOUT_S = 120.0
CONTROLLERS = (
    "deployment-controller,replicaset-controller,garbage-collector-controller,"
    "namespace-controller,serviceaccount-controller,serviceaccount-token-controller,"
    "endpointslice-controller,disruption-controller,pod-garbage-collector-controller,"
    "clusterrole-aggregation-controller,root-ca-certificate-publisher-controller"
)


class ControlPlaneUnavailable(RuntimeError):
    """The binaries are missing or a process would not start; the message says which."""


def find_assets() -> Path:
    """The directory holding the three control-plane binaries."""
    configured = os.environ.get("KUBEBUILDER_ASSETS")
    if configured:
        directory = Path(configured)
        missing = [b for b in BINARIES if not (directory / b).is_file()]
        if missing:
            raise ControlPlaneUnavailable(f"KUBEBUILDER_ASSETS={directory} lacks {missing}")
        return directory
    directory = CACHE / "envtest" / ENVTEST_VERSION
    for binary in BINARIES:
        target = directory / binary
        if target.is_file():
            continue
        packed = SHARED_ENVTEST / f"{binary}.xz"
        if not packed.is_file():
            raise ControlPlaneUnavailable(
                f"no {binary}: set KUBEBUILDER_ASSETS or provide {packed}"
            )
        directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with partial.open("wb") as out:
            subprocess.run(["xz", "-dc", str(packed)], stdout=out, check=True)
        partial.chmod(0o755)
        partial.rename(target)  # atomic: a crash never leaves half a binary under its name
    return directory


def find_etcd() -> Path:
    found = os.environ.get("ETCD") or shutil.which("etcd") or "/usr/bin/etcd"
    if not Path(found).is_file():
        raise ControlPlaneUnavailable("no etcd: apt-get install etcd-server, or set ETCD")
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _client_cert(pki: Path, name: str, subject: str) -> None:
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", cwd=pki,
    )  # fmt: skip


def make_pki(pki: Path) -> None:
    """CA, serving certificate (127.0.0.1, localhost), client certs, service-account keys."""
    pki.mkdir(parents=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=llm-operator-test-ca", cwd=pki,
    )  # fmt: skip
    (pki / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("genrsa", "-out", "server.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", "server.key", "-subj", "/CN=kube-apiserver",
             "-out", "server.csr", cwd=pki)  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.crt", cwd=pki,
    )  # fmt: skip
    _client_cert(pki, "admin", "/O=system:masters/CN=admin")
    _client_cert(pki, "controller-manager", "/CN=system:kube-controller-manager")
    _client_cert(pki, "scheduler", "/CN=system:kube-scheduler")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig(server: str, ca: Path, user: dict[str, str], name: str = "envtest") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
    )


@dataclass
class ControlPlane:
    """Start with `start()` (or as a context manager); `kubeconfig` is the admin's."""

    workdir: Path
    admission_plugins: tuple[str, ...] = ()
    # A /24 holds 253 Services: the 1,000-object benchmark ran out ("range is full").
    service_cidr: str = "10.0.0.0/16"
    apiserver_args: tuple[str, ...] = ()  # more kube-apiserver flags (e.g. an audit log)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    url: str = ""

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def admin_cert(self) -> tuple[str, str]:
        return str(self.pki / "admin.crt"), str(self.pki / "admin.key")

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(*self.admin_cert())
        return context

    def token_kubeconfig(self, token: str, name: str) -> Path:
        """A kubeconfig that authenticates with a bearer token (a service account's)."""
        out = self.workdir / f"{name}.kubeconfig"
        out.write_text(kubeconfig(self.url, self.ca_file, {"token": token}))
        return out

    def start(self) -> ControlPlane:
        assets, etcd = find_assets(), find_etcd()
        self.workdir.mkdir(parents=True, exist_ok=True)
        make_pki(self.pki)
        etcd_client, etcd_peer, api_port = free_port(), free_port(), free_port()
        self.url = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "etcd",
            str(etcd), "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
        )  # fmt: skip
        pki = self.pki
        admission = (
            [f"--enable-admission-plugins={','.join(self.admission_plugins)}"]
            if self.admission_plugins
            else []
        )
        self._spawn(
            "kube-apiserver",
            str(assets / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'server.crt'}",
            f"--tls-private-key-file={pki / 'server.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            *admission,
            *self.apiserver_args,
        )  # fmt: skip
        admin = {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")}
        self.kubeconfig.write_text(kubeconfig(self.url, self.ca_file, admin))
        self._wait_ready()
        for component, extra in (
            (
                "kube-controller-manager",
                [
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--controllers={CONTROLLERS}",
                ],
            ),
            ("kube-scheduler", []),
        ):
            config = self.workdir / f"{component}.kubeconfig"
            name = component.removeprefix("kube-")
            user = {"client-certificate": str(pki / f"{name}.crt"),
                    "client-key": str(pki / f"{name}.key")}  # fmt: skip
            config.write_text(kubeconfig(self.url, self.ca_file, user))
            self._spawn(
                component,
                str(assets / component),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                *extra,
            )
        return self

    def _spawn(self, name: str, *argv: str) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(verify=self._ssl_context(), timeout=5) as http:
            while time.monotonic() < deadline:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise ControlPlaneUnavailable(
                            f"{name} exited with {process.returncode}:\n{self.log_tail(name)}"
                        )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.url}/readyz").text == "ok":
                        return
                time.sleep(0.25)
        raise ControlPlaneUnavailable(
            f"kube-apiserver not ready in {READY_TIMEOUT_S:.0f}s:\n"
            + self.log_tail("kube-apiserver")
        )

    def stop(self) -> None:
        for name in reversed(list(self.processes)):  # scheduler ... etcd
            process = self.processes.pop(name)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_control_plane(workdir: Path, **kwargs: object) -> Iterator[ControlPlane]:
    plane = ControlPlane(workdir, **kwargs)  # type: ignore[arg-type]
    try:
        yield plane.start()
    finally:
        plane.stop()
