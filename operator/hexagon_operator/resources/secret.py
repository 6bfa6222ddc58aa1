"""The per-topology admin-token Secret shared by every node of one hexagon.

The token protects the gateways' admin endpoints (/debug/*, PUT /config, fault injection).
It is generated once, by whoever creates the Secret first, and never overwritten: the
reconciler creates it with POST and treats 409 AlreadyExists as success, so rotating it is
a deliberate act (delete the Secret) rather than a side effect of a reconcile.
The token value is passed in; generating randomness is the caller's job, not a builder's.
"""

from __future__ import annotations

from typing import Any

from .. import api
from .labels import owner_reference


def build_admin_secret(node: api.NodeRef, spec: api.NodeSpec, *, token: str) -> dict[str, Any]:
    # Owned (not controlled) by each node of the topology: garbage-collected with the last one.
    owner = owner_reference(node)
    owner["controller"] = False
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": api.admin_secret_name(spec.topology),
            "namespace": node.namespace,
            "labels": {
                api.LABEL_PART_OF: "hexagon",
                api.LABEL_MANAGED_BY: api.MANAGED_BY,
                api.LABEL_TOPOLOGY: spec.topology,
            },
            "ownerReferences": [owner],
        },
        "stringData": {api.TOKEN_KEY: token},
    }
