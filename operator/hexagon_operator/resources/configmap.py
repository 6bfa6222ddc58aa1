"""The gateway config document and the ConfigMap that carries it.

The document is the full gateway config (format version 1): the routing part copied from
``spec.gateway`` plus what only the operator knows (node identity, listen ports, the admin
token file, pod weights). It is split by reloadability: routes, upstreams, trusted proxies and
weights are hot-reloaded by the gateway (pushed to Ready pods through PUT /config), while
listen, admin, workers and node identity need a restart. ``config_hash`` covers only the
latter, so the pod-template annotation changes (and pods roll) only when a restart is needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import yaml

from .. import api
from .labels import child_names, metadata

CONFIG_VERSION = 1
RESTART_KEYS = ("version", "node", "listen", "workers", "admin")


def _plain(value: Any) -> Any:
    """Deep copy to plain dict/list so kopf's read-only views and tuples serialise cleanly."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def render_config(
    node: api.NodeRef, spec: api.NodeSpec, *, weights: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The gateway config document for this node, as a dict."""
    return {
        "version": CONFIG_VERSION,
        "node": {
            "name": node.name,
            "namespace": node.namespace,
            "topology": spec.topology,
            "spoke": spec.spoke,
            "ring": spec.ring_level,
        },
        "listen": {
            "data": {"host": "0.0.0.0", "port": api.DATA_PORT},
            "admin": {"host": "0.0.0.0", "port": api.ADMIN_PORT},
        },
        "workers": spec.workers,
        "admin": {"tokenFile": f"{api.TOKEN_DIR}/{api.TOKEN_KEY}"},
        "trustedProxies": list(spec.gateway.trusted_proxies),
        "weights": {k: int(v) for k, v in sorted((weights or {}).items())},
        "upstreams": _plain(spec.gateway.upstreams),
        "routes": _plain(spec.gateway.routes),
    }


def dump_config(doc: Mapping[str, Any]) -> str:
    """Stable YAML text: the same document always renders to the same bytes."""
    return yaml.safe_dump(_plain(doc), sort_keys=False, default_flow_style=False)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(doc: Mapping[str, Any]) -> str:
    """Hash of the parts a running gateway cannot hot-reload (pod-template annotation)."""
    return _digest({k: doc.get(k) for k in RESTART_KEYS})


def config_revision(doc: Mapping[str, Any]) -> str:
    """Hash of the whole document (status.configRevision): changes with any route edit."""
    return _digest(doc)


def build_configmap(
    node: api.NodeRef, spec: api.NodeSpec, *, doc: Mapping[str, Any]
) -> dict[str, Any]:
    meta = metadata(node, spec, name=child_names(node.name)["configmap"])
    meta["annotations"] = {api.ANNOTATION_CONFIG_REVISION: config_revision(doc)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {api.CONFIG_KEY: dump_config(doc)},
    }
