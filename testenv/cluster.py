"""One handle over a named cluster at either level, plus image loading into its node."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from . import images, procs
from .controlplane import ControlPlane
from .node import Node
from .paths import STATE

SESSION_SLOTS = range(10, 50)


@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        f.write(str(os.getpid()))
        f.flush()
        yield True


@contextlib.contextmanager
def claim_session_name() -> Iterator[str]:
    """A cluster name (and so addresses and ports) no other live session holds."""
    for slot in SESSION_SLOTS:
        with _flock(STATE / "locks" / f"slot-{slot}.lock", blocking=False) as held:
            if held:
                name = f"session{slot}"
                # a previous holder that died may have left processes: clean them first
                stale = Cluster(name, with_node=False)
                if stale.cp.state.exists():
                    if (stale.cp.state / "node").exists():
                        with node_lock():
                            stale.down()
                    else:
                        stale.down()
                yield name
                return
    raise RuntimeError(f"all {len(SESSION_SLOTS)} test cluster slots are in use")


def node_owner() -> str | None:
    """The cluster whose kubelet runs now, if any."""
    if not STATE.exists():
        return None
    for state in sorted(STATE.iterdir()):
        if "kubelet" in procs.running(state):
            return state.name
    return None


@contextlib.contextmanager
def node_lock() -> Iterator[None]:
    """The node level owns machine-wide things (kube-proxy chains, pod bridge): one at a time."""
    with _flock(STATE / "locks" / "node.lock", blocking=True):
        yield


class Cluster:
    """A control plane, optionally with a node. Used by fixtures and `python -m testenv`."""

    def __init__(self, name: str, *, with_node: bool) -> None:
        self.cp = ControlPlane(name)
        self.node = Node(self.cp) if with_node else None

    @property
    def kubeconfig(self) -> Path:
        return self.cp.kubeconfig

    def up(self) -> Cluster:
        started = time.monotonic()
        if self.node is not None:
            owner = node_owner()
            if owner not in (None, self.cp.name):
                raise RuntimeError(
                    f"cluster {owner!r} already runs the node level on this machine (one at a "
                    f"time); stop it first: python -m testenv down --name {owner}"
                )
        self.cp.up()
        if self.node is not None:
            self.node.up()
            self.load(images.ensure_pause())
            self.load(images.ensure_base())
        self.ready_seconds = time.monotonic() - started
        return self

    def down(self) -> None:
        node = self.node or Node(self.cp)
        if node.state.exists():
            node.down()
        self.cp.down()

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return self.cp.kubectl(*args, check=check, timeout=timeout)

    def load(self, image: str) -> str:
        """Import a locally built image into the node's containerd unless it is already there."""
        assert self.node is not None, "images need the single-node level"
        path = images.archive(image)
        record = self.node.state / "imported.json"
        seen: dict[str, str] = json.loads(record.read_text()) if record.exists() else {}
        if seen.get(image) != path.name or image not in self.node.images():
            self.node.import_image(path)
            seen[image] = path.name
            record.write_text(json.dumps(seen))
        return image

    def namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        return name

    def status(self) -> dict[str, bool]:
        live = set(procs.running(self.cp.state))
        names = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
        if self.node is not None:
            names += ["containerd", "coredns", "kubelet", "kube-proxy"]
        return {n: n in live for n in names}
