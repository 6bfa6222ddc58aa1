"""Names, labels, selectors and owner references shared by every child object.

The selector uses only labels that never change for the life of a node (name and instance):
a StatefulSet's selector is immutable, while the ring label may change with ``spec.ringLevel``.
"""

from __future__ import annotations

from typing import Any

from .. import api


def child_names(name: str) -> dict[str, str]:
    """Object names per kind; the client Service carries the node's own name (stable DNS)."""
    return {
        "statefulset": name,
        "headless": f"{name}-headless",
        "client": name,
        "configmap": f"{name}-config",
        "pdb": name,
    }


def selector(name: str) -> dict[str, str]:
    return {api.LABEL_NAME: api.APP_NAME, api.LABEL_INSTANCE: name}


def selector_string(name: str) -> str:
    """The ``status.selector`` the scale subresource reports (sorted, comma separated)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector(name).items()))


def common_labels(name: str, spec: api.NodeSpec) -> dict[str, str]:
    return {
        **selector(name),
        api.LABEL_COMPONENT: "gateway",
        api.LABEL_PART_OF: "hexagon",
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
        api.LABEL_TOPOLOGY: spec.topology,
        api.LABEL_SPOKE: spec.spoke,
        api.LABEL_RING: str(spec.ring_level),
    }


def pod_labels(name: str, spec: api.NodeSpec, *, heal_epoch: str = "") -> dict[str, str]:
    labels = common_labels(name, spec)
    if heal_epoch:
        labels[api.LABEL_HEAL_EPOCH] = heal_epoch
    return labels


def owner_reference(node: api.NodeRef) -> dict[str, Any]:
    """Controller reference so deleting the HexagonNode garbage-collects the child."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": node.name,
        "uid": node.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    node: api.NodeRef, spec: api.NodeSpec, *, name: str, owned: bool = True
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": node.namespace,
        "labels": common_labels(node.name, spec),
    }
    if owned:
        meta["ownerReferences"] = [owner_reference(node)]
    return meta
