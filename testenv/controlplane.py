"""A real Kubernetes control plane: etcd, kube-apiserver, controller-manager and scheduler.

The apiserver listens on an address of a host-only interface this harness creates (a
port-less bridge; the apiserver refuses a loopback advertise address, and pods reach it there
through the `kubernetes` Service); everything else listens on loopback. Nothing binds the
machine's external interface.
"""

from __future__ import annotations

import json
import shutil
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .certs import Authority, Pair, write_kubeconfig
from .paths import STATE, binary

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
NODE_NAME = "hexagon-node"
# Fixed indexes keep well-known clusters on stable addresses and ports.
_KNOWN = {"dev": 1, "ci": 2, "pytest": 3}


def cluster_index(name: str) -> int:
    if name in _KNOWN:
        return _KNOWN[name]
    if name.startswith("session") and name[7:].isdigit():
        return int(name[7:])
    return 50 + sum(name.encode()) % 40


@dataclass
class ControlPlane:
    """Addresses, files and lifecycle of one named control plane."""

    name: str
    index: int = 0
    state: Path = field(init=False)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = cluster_index(self.name)
        self.state = STATE / self.name

    # -- addresses -------------------------------------------------------------------------
    @property
    def host_ip(self) -> str:
        """The address of the apiserver and the node, on the harness's host-only interface."""
        return f"10.213.0.{self.index}"

    @property
    def interface(self) -> str:
        return f"hxhost{self.index}"

    def port(self, offset: int) -> int:
        return 20000 + self.index * 100 + offset

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.port(1)}"

    @property
    def server(self) -> str:
        return f"https://{self.host_ip}:{self.port(43)}"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> None:
        """Start every component not already running, and wait until each is ready."""
        self.state.mkdir(parents=True, exist_ok=True)
        self._interface()
        ca = Authority(self.pki)
        self._credentials(ca)
        live = set(procs.running(self.state))
        if "etcd" not in live:
            self._start_etcd()
        if "kube-apiserver" not in live:
            self._start_apiserver(ca)
        if "kube-controller-manager" not in live:
            self._start_controller_manager(ca)
        if "kube-scheduler" not in live:
            self._start_scheduler()
        procs.wait_until(
            "kube-controller-manager",
            lambda: self._healthz(self.port(57)),
            timeout=60,
            state=self.state,
            component="kube-controller-manager",
        )
        procs.wait_until(
            "kube-scheduler",
            lambda: self._healthz(self.port(59)),
            timeout=60,
            state=self.state,
            component="kube-scheduler",
        )
        procs.wait_until(
            "default service account",
            self._default_service_account,
            timeout=60,
            state=self.state,
            component="kube-controller-manager",
        )

    def down(self, *, keep_state: bool = False) -> None:
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            procs.stop(self.state, name)
        procs.run(["ip", "link", "del", self.interface], check=False)
        if not keep_state and self.state.exists():
            shutil.rmtree(self.state, ignore_errors=True)

    # -- pieces ----------------------------------------------------------------------------
    def _interface(self) -> None:
        links = procs.run(["ip", "-o", "link", "show"])
        if f" {self.interface}:" not in links:
            # a port-less bridge: this kernel has no dummy driver, and a bridge is always built in
            procs.run(["ip", "link", "add", self.interface, "type", "bridge"])
        addrs = procs.run(["ip", "-o", "addr", "show", "dev", self.interface])
        if self.host_ip not in addrs:
            procs.run(["ip", "addr", "add", f"{self.host_ip}/32", "dev", self.interface])
        procs.run(["ip", "link", "set", self.interface, "up"])

    def _credentials(self, ca: Authority) -> None:
        ca.issue(
            "apiserver",
            cn="kube-apiserver",
            server=True,
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", self.host_ip, KUBERNETES_SERVICE_IP),
        )
        ca.issue(
            "apiserver-kubelet-client", cn="kube-apiserver-kubelet-client", org="system:masters"
        )
        ca.service_account_keys()
        for stem, cn, org in (
            ("admin", "hexagon-admin", "system:masters"),
            ("controller-manager", "system:kube-controller-manager", None),
            ("scheduler", "system:kube-scheduler", None),
        ):
            pair = ca.issue(stem, cn=cn, org=org)
            write_kubeconfig(
                self.state / f"{stem}.kubeconfig",
                server=self.server,
                ca=ca.pair.cert,
                client=pair,
                user=cn,
            )

    def _start_etcd(self) -> None:
        data = self.state / "etcd"
        procs.start(
            "etcd",
            [
                binary("etcd"),
                "--name",
                "hexagon",
                "--data-dir",
                str(data),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.port(2)}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.port(2)}",
                "--initial-cluster",
                f"hexagon=http://127.0.0.1:{self.port(2)}",
                "--listen-metrics-urls",
                f"http://127.0.0.1:{self.port(3)}",
                "--log-level",
                "warn",
            ],
            state=self.state,
        )
        procs.wait_until(
            "etcd",
            lambda: _get_json(f"{self.etcd_url}/health").get("health") == "true",
            timeout=30,
            state=self.state,
            component="etcd",
        )

    def _start_apiserver(self, ca: Authority) -> None:
        pki = self.pki
        procs.start(
            "kube-apiserver",
            [
                binary("kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.host_ip}",
                f"--advertise-address={self.host_ip}",
                f"--secure-port={self.port(43)}",
                f"--client-ca-file={ca.pair.cert}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={ca.pair.cert}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
            ],
            state=self.state,
        )
        admin = Pair(pki / "admin.crt", pki / "admin.key")
        procs.wait_until(
            "kube-apiserver /readyz",
            lambda: _get_text(f"{self.server}/readyz", ca=ca.pair.cert, client=admin) == "ok",
            timeout=90,
            state=self.state,
            component="kube-apiserver",
        )

    def _start_controller_manager(self, ca: Authority) -> None:
        kc = self.state / "controller-manager.kubeconfig"
        procs.start(
            "kube-controller-manager",
            [
                binary("kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={ca.pair.cert}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={ca.pair.cert}",
                f"--cluster-signing-key-file={ca.pair.key}",
                "--controllers=*",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port(57)}",
                "--profiling=false",
            ],
            state=self.state,
        )

    def _start_scheduler(self) -> None:
        kc = self.state / "scheduler.kubeconfig"
        procs.start(
            "kube-scheduler",
            [
                binary("kube-scheduler"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port(59)}",
                "--profiling=false",
            ],
            state=self.state,
        )

    def _healthz(self, port: int) -> bool:
        return _get_text(f"https://127.0.0.1:{port}/healthz", ca=None, client=None) == "ok"

    def _default_service_account(self) -> bool:
        out = procs.run(
            [
                binary("kubectl"),
                f"--kubeconfig={self.kubeconfig}",
                "get",
                "serviceaccount",
                "default",
                "-n",
                "default",
                "-o",
                "name",
            ],
            check=False,
        )
        return out.strip() == "serviceaccount/default"

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return procs.run(
            [binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            check=check,
            timeout=timeout,
        )


def _context(ca: Path | None, client: Pair | None) -> ssl.SSLContext:
    if ca is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


def _get_text(url: str, *, ca: Path | None, client: Pair | None) -> str:
    ctx = _context(ca, client) if url.startswith("https") else None
    with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
        return str(resp.read().decode())


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=2) as resp:
        data = json.loads(resp.read())
    assert isinstance(data, dict)
    return data
