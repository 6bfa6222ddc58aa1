"""Where binaries, caches and per-cluster state live, and the pinned versions.

Binaries and images are cached by version outside the repository (HEXAGON_CACHE); a running
cluster's state (certificates, etcd data, pid files, logs) lives under HEXAGON_STATE so that
teardown can find exactly what it started.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CACHE = Path(os.environ.get("HEXAGON_CACHE", "/var/cache/hexagon"))
STATE = Path(os.environ.get("HEXAGON_STATE", "/var/lib/hexagon-testenv"))
BIN = CACHE / "bin"
REPO = Path(__file__).resolve().parent.parent


def binary(name: str) -> str:
    """Absolute path of a tool: the project's cache first, then the system PATH."""
    cached = BIN / name
    if cached.exists():
        return str(cached)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"{name} is not installed; run `make testenv` (scripts/testenv.sh) first"
        )
    return found
