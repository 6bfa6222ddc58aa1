"""pytest fixtures over the real environment (loaded by the root conftest.py).

- `kube_api`: a session-wide control plane (etcd, apiserver, controller-manager, scheduler);
- `kube_node`: the same cluster with a real node (containerd, kubelet, CNI, kube-proxy);
- `prometheus`: a factory that starts a real Prometheus with the configuration a test gives.
Both cluster fixtures hand out a fresh namespace per call of `.namespace()` and delete those
namespaces when the test ends. The cluster is torn down at the end of the session unless
HEXAGON_KEEP_CLUSTER=1 (handy while iterating: the next session reuses it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .cluster import Cluster, claim_session_name, node_lock
from .paths import BIN
from .prometheus import Prometheus

SESSION_CLUSTER = os.environ.get("HEXAGON_TEST_CLUSTER", "")
# Tests and the programs they start find the project's pinned kubectl, helm and Kubernetes
# binaries first, whatever else the machine has on its PATH.
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


class KubeHandle:
    """What a test sees of the cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.kubeconfig: Path = cluster.kubeconfig
        self.server = cluster.cp.server
        self.host_ip = cluster.cp.host_ip
        self._namespaces: list[str] = []

    def namespace(self, prefix: str = "t") -> str:
        name = self.cluster.namespace(prefix)
        self._namespaces.append(name)
        return name

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return self.cluster.kubectl(*args, check=check, timeout=timeout)

    def image(self, name: str) -> str:
        """A project image (built from its Dockerfile if needed) loaded into the node."""
        from . import projectimages

        return self.cluster.load(projectimages.build(name))

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def cleanup(self) -> None:
        for ns in self._namespaces:
            self.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        self._namespaces.clear()


class _Session:
    name = ""
    cluster: Cluster | None = None
    node_up = False
    stack: contextlib.ExitStack


@pytest.fixture(scope="session")
def _session_cluster() -> Iterator[_Session]:
    session = _Session()
    with contextlib.ExitStack() as stack:
        # Each pytest session gets its own control plane (own addresses and ports), so
        # sessions can run side by side; only the node level is one per machine (a lock).
        if SESSION_CLUSTER:
            session.name = SESSION_CLUSTER
        else:
            session.name = stack.enter_context(claim_session_name())
        session.stack = stack
        yield session
        if session.cluster is not None and os.environ.get("HEXAGON_KEEP_CLUSTER") != "1":
            session.cluster.down()


@pytest.fixture
def kube_api(_session_cluster: _Session) -> Iterator[KubeHandle]:
    if _session_cluster.cluster is None:
        _session_cluster.cluster = Cluster(_session_cluster.name, with_node=False).up()
    handle = KubeHandle(_session_cluster.cluster)
    yield handle
    handle.cleanup()


def _node_handle(session: _Session) -> KubeHandle:
    if not session.node_up:
        session.stack.enter_context(node_lock())
        session.cluster = Cluster(session.name, with_node=True).up()
        session.node_up = True
    assert session.cluster is not None
    return KubeHandle(session.cluster)


@pytest.fixture
def kube_node(_session_cluster: _Session) -> Iterator[KubeHandle]:
    handle = _node_handle(_session_cluster)
    yield handle
    handle.cleanup()


@pytest.fixture(scope="module")
def kube_node_module(_session_cluster: _Session) -> Iterator[KubeHandle]:
    """The node cluster for a module whose tests build on each other (e2e)."""
    handle = _node_handle(_session_cluster)
    yield handle
    handle.cleanup()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[Mapping[str, Any]], Prometheus]]:
    started: list[Prometheus] = []

    def start(config: Mapping[str, Any]) -> Prometheus:
        state = tmp_path / f"prometheus-{len(started)}"
        state.mkdir()
        prom = Prometheus(config, state=state).start()
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()
