"""The project's own images (gateway, operator), built from their Dockerfiles on the base."""

from __future__ import annotations

from . import images
from .paths import REPO

IMAGES = {
    "gateway": ("docker.io/hexagon/gateway:dev", REPO / "gateway_node" / "Dockerfile"),
    "operator": ("docker.io/hexagon/operator:dev", REPO / "operator" / "Dockerfile"),
}


def build(name: str) -> str:
    if name == "base":
        return images.ensure_base()
    tag, containerfile = IMAGES[name]
    if not containerfile.exists():
        raise FileNotFoundError(f"{containerfile} does not exist yet")
    return images.build(tag=tag, containerfile=containerfile)
