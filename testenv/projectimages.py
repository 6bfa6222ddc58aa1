"""The project's own images (gateway, operator), built from their Dockerfiles on the base."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from . import images, procs
from .paths import CACHE, REPO, binary

IMAGES = {
    "gateway": ("docker.io/hexagon/gateway:dev", REPO / "gateway_node" / "Dockerfile"),
    "operator": ("docker.io/hexagon/operator:dev", REPO / "operator" / "Dockerfile"),
}


PROMETHEUS_IMAGE = "docker.io/hexagon/prometheus:dev"


def build_prometheus() -> str:
    """Debian's prometheus and promtool binaries, packed on the base image."""
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        context = Path(tmp)
        for tool in ("prometheus", "promtool"):
            shutil.copy2(binary(tool), context / tool)
        return images.build(
            tag=PROMETHEUS_IMAGE,
            containerfile=Path(__file__).parent / "images" / "prometheus" / "Containerfile",
            context=context,
        )


def _context(directory: Path) -> Path:
    """A build context with the locked runtime dependencies as wheels and the project wheel.

    Wheels are built on the host, where pip reaches PyPI with the machine's trust store, and
    cached by the lock file's hash; the image build itself needs no network.
    """
    lock = REPO / "requirements-runtime.lock"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    wheels = CACHE / "wheels" / digest
    if not (wheels / ".complete").exists():
        wheels.mkdir(parents=True, exist_ok=True)
        procs.run(
            [
                "python3",
                "-m",
                "pip",
                "wheel",
                "-q",
                "--only-binary=:all:",
                "-r",
                str(lock),
                "-w",
                str(wheels),
            ],
            timeout=900,
        )
        (wheels / ".complete").write_text("")
    shutil.copytree(wheels, directory / "wheels", ignore=shutil.ignore_patterns(".complete"))
    shutil.copy2(lock, directory / "requirements-runtime.lock")
    procs.run(
        [
            "python3",
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            str(REPO),
            "-w",
            str(directory / "dist"),
        ],
        timeout=300,
    )
    return directory


def build(name: str) -> str:
    if name == "base":
        return images.ensure_base()
    if name == "prometheus":
        return build_prometheus()
    tag, containerfile = IMAGES[name]
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        return images.build(tag=tag, containerfile=containerfile, context=_context(Path(tmp)))
