"""Pure builders of a HexagonNode's children: each is a function of the node, its spec and the
settings returning a plain dict (the object as it is applied with server-side apply).

Nothing here talks to the API or reads the environment, so every builder is golden-tested
(tests/golden/) and the reconciler only decides *when* to apply what these return.
"""

from __future__ import annotations

from .configmap import build_configmap, config_hash, render_config
from .disruption import build_pdb
from .labels import pod_labels, selector, selector_string
from .secret import build_admin_secret
from .services import build_client_service, build_headless_service
from .statefulset import build_statefulset

__all__ = [
    "build_admin_secret",
    "build_client_service",
    "build_configmap",
    "build_headless_service",
    "build_pdb",
    "build_statefulset",
    "config_hash",
    "pod_labels",
    "render_config",
    "selector",
    "selector_string",
]
