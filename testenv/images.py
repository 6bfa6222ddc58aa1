"""Container images built on this machine, with no registry: base, pause, and project images.

The Debian base comes from debootstrap (with python3, which is 3.11 on bookworm); the pause
image is a tiny static C program on `scratch`. buildah builds daemonlessly into a storage root
inside the cache, and images reach containerd as docker archives through `ctr images import`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import procs
from .paths import CACHE, REPO, binary

STORAGE = CACHE / "buildah"
ARCHIVES = CACHE / "images"
BASE_IMAGE = "docker.io/hexagon/debian-base:bookworm"
PAUSE_IMAGE = "docker.io/hexagon/pause:1"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")


def buildah(*args: str, timeout: float = 1800) -> str:
    return procs.run(
        [
            binary("buildah"),
            "--root",
            str(STORAGE / "storage"),
            "--runroot",
            "/run/hexagon-buildah",
            "--storage-driver",
            "overlay",
            *args,
        ],
        timeout=timeout,
    )


def exists(image: str) -> bool:
    try:
        buildah("inspect", "--type", "image", image)
    except RuntimeError:
        return False
    return True


def image_id(image: str) -> str:
    return buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", image).strip()


def ensure_base(*, log: bool = True) -> str:
    if exists(BASE_IMAGE):
        return BASE_IMAGE
    if log:
        print(f"==> building {BASE_IMAGE} with debootstrap (about a minute)", flush=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(
            [
                binary("debootstrap"),
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(root),
                DEBIAN_MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk).mkdir(parents=True, exist_ok=True)
        tarball = Path(tmp) / "rootfs.tar"
        procs.run(
            ["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."], timeout=600
        )
        ctr = buildah("from", "scratch").strip()
        try:
            buildah("add", ctr, str(tarball), "/")
            buildah("config", "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash", ctr)
            buildah("commit", "--rm", ctr, BASE_IMAGE)
        except Exception:
            buildah("rm", ctr)
            raise
    return BASE_IMAGE


def ensure_pause() -> str:
    if exists(PAUSE_IMAGE):
        return PAUSE_IMAGE
    with tempfile.TemporaryDirectory() as tmp:
        binary_path = Path(tmp) / "pause"
        procs.run(
            [
                "gcc",
                "-static",
                "-O2",
                "-s",
                "-o",
                str(binary_path),
                str(Path(__file__).parent / "images" / "pause.c"),
            ]
        )
        ctr = buildah("from", "scratch").strip()
        buildah("copy", ctr, str(binary_path), "/pause")
        buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", ctr)
        buildah("commit", "--rm", ctr, PAUSE_IMAGE)
    return PAUSE_IMAGE


def build(*, tag: str, containerfile: Path, context: Path = REPO) -> str:
    """Build a project image; buildah's layer cache makes an unchanged rebuild quick."""
    ensure_base()
    buildah(
        "bud",
        "--layers",
        "--isolation",
        "chroot",
        "-f",
        str(containerfile),
        "-t",
        tag,
        str(context),
        timeout=3600,
    )
    return tag


def archive(image: str) -> Path:
    """A docker archive of the image, cached by image id."""
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    ident = image_id(image) or hashlib.sha256(image.encode()).hexdigest()
    path = ARCHIVES / f"{image.replace('/', '_').replace(':', '_')}-{ident[:12]}.tar"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        buildah("push", image, f"docker-archive:{tmp}:{image}")
        tmp.rename(path)
    return path
