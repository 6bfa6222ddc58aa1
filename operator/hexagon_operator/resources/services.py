"""The node's two Services.

The headless Service gives each StatefulSet pod a stable DNS name (peer routing, debugging);
it does not publish not-ready addresses, so a pod the healer takes out of rotation (readiness
gate False) leaves both Services' endpoints. The client Service carries data traffic (8080).
"""

from __future__ import annotations

from typing import Any

from .. import api
from .labels import child_names, metadata, selector


def build_headless_service(node: api.NodeRef, spec: api.NodeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(node, spec, name=child_names(node.name)["headless"]),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": selector(node.name),
            "ports": [
                {"name": "data", "port": api.DATA_PORT, "targetPort": "data", "protocol": "TCP"},
                {"name": "admin", "port": api.ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"},
            ],
        },
    }


def build_client_service(node: api.NodeRef, spec: api.NodeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(node, spec, name=child_names(node.name)["client"]),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(node.name),
            "ports": [
                {"name": "data", "port": api.DATA_PORT, "targetPort": "data", "protocol": "TCP"},
            ],
        },
    }
