"""One handle over a named cluster at either level, plus image loading into its node."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from . import images, procs
from .controlplane import ControlPlane
from .node import Node


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
        self.cp.up()
        if self.node is not None:
            self.node.up()
            self.load(images.ensure_pause())
            self.load(images.ensure_base())
        self.ready_seconds = time.monotonic() - started
        return self

    def down(self) -> None:
        node = self.node or Node(self.cp)
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
            names += ["containerd", "kubelet", "kube-proxy"]
        return {n: n in live for n in names}
