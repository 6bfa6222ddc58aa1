"""The node's PodDisruptionBudget.

Voluntary disruptions (node drains) may take out the same share of pods the healer may
isolate at once, ``selfHeal.maxUnavailablePercent``; Kubernetes rounds the percentage up, so
a one-pod node can still be drained.
"""

from __future__ import annotations

from typing import Any

from .. import api
from .labels import child_names, metadata, selector


def build_pdb(node: api.NodeRef, spec: api.NodeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(node, spec, name=child_names(node.name)["pdb"]),
        "spec": {
            "maxUnavailable": f"{spec.self_heal.max_unavailable_percent}%",
            "selector": {"matchLabels": selector(node.name)},
            # Pods out of rotation are not healthy; let drains evict them first.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
