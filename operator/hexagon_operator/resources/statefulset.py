"""The node's StatefulSet: the gateway pods, hardened and spread across failure domains.

Choices that are easy to get wrong:
- the readiness gate ``hexagon.dev/in-rotation`` is in the template from the start, because
  gates cannot be added to running pods; the operator sets it True once containers are ready;
- ``podManagementPolicy: Parallel`` so scale-ups and respawns do not wait for ordinal order;
- the config-hash annotation covers only the config the gateway cannot hot-reload, so a route
  change does not restart pods (it is pushed to them), while a listen/worker change rolls;
- the pod gets no service-account token: the gateway never talks to the API server.
"""

from __future__ import annotations

from typing import Any

from .. import api
from ..config import Settings
from .labels import child_names, metadata, pod_labels, selector


def _resources(spec: api.NodeSpec) -> dict[str, Any]:
    r = spec.resources
    limits = {"memory": r.limits_memory}
    if r.limits_cpu:
        limits["cpu"] = r.limits_cpu
    return {"requests": {"cpu": r.requests_cpu, "memory": r.requests_memory}, "limits": limits}


def _affinity(name: str, spec: api.NodeSpec) -> dict[str, Any]:
    """Preferred spreading: replicas of this node across hosts, and nodes of one ring (one
    failure domain) across zones, so losing a host or a zone costs a ring as little as possible.
    Preferred rather than required, so a single-node cluster still schedules every pod."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector(name)},
                    },
                },
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "topology.kubernetes.io/zone",
                        "labelSelector": {
                            "matchLabels": {
                                api.LABEL_NAME: api.APP_NAME,
                                api.LABEL_TOPOLOGY: spec.topology,
                                api.LABEL_RING: str(spec.ring_level),
                            }
                        },
                    },
                },
            ]
        }
    }


def _container(spec: api.NodeSpec, settings: Settings) -> dict[str, Any]:
    def field_env(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    def probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "admin", "scheme": "HTTP"},
            "periodSeconds": period,
            "timeoutSeconds": 1,
            "failureThreshold": failures,
        }

    return {
        "name": "gateway",
        "image": spec.image or settings.gateway_image,
        "imagePullPolicy": spec.image_pull_policy,
        # The image's entrypoint is `hexagon-gateway` (gateway_node/Dockerfile); passing only
        # args keeps the pod independent of where the image installs it.
        "args": ["--config", f"{api.CONFIG_DIR}/{api.CONFIG_KEY}"],
        "ports": [
            {"name": "data", "containerPort": api.DATA_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": api.ADMIN_PORT, "protocol": "TCP"},
        ],
        "env": [
            field_env("HEXAGON_POD_NAME", "metadata.name"),
            field_env("HEXAGON_POD_NAMESPACE", "metadata.namespace"),
            field_env("HEXAGON_POD_IP", "status.podIP"),
        ],
        "resources": _resources(spec),
        "startupProbe": probe("/healthz", period=1, failures=60),
        "livenessProbe": probe("/healthz", period=10, failures=3),
        "readinessProbe": probe("/readyz", period=2, failures=2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": api.CONFIG_DIR, "readOnly": True},
            {"name": "admin-token", "mountPath": api.TOKEN_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def build_statefulset(
    node: api.NodeRef,
    spec: api.NodeSpec,
    *,
    settings: Settings,
    config_hash: str,
    heal_epoch: str = "",
    replicas: int | None = None,
) -> dict[str, Any]:
    """``replicas`` overrides spec.replicas while the healer respawns the whole node."""
    names = child_names(node.name)
    uid = settings.gateway_run_as_user
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(node, spec, name=names["statefulset"]),
        "spec": {
            "replicas": spec.replicas if replicas is None else replicas,
            "serviceName": names["headless"],
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(node.name)},
            "template": {
                "metadata": {
                    "labels": pod_labels(node.name, spec, heal_epoch=heal_epoch),
                    "annotations": {api.ANNOTATION_CONFIG_HASH: config_hash},
                },
                "spec": {
                    "readinessGates": [{"conditionType": api.READINESS_GATE}],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": uid,
                        "runAsGroup": uid,
                        "fsGroup": uid,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": _affinity(node.name, spec),
                    "containers": [_container(spec, settings)],
                    "volumes": [
                        {
                            "name": "config",
                            "configMap": {"name": names["configmap"], "defaultMode": 0o444},
                        },
                        {
                            "name": "admin-token",
                            "secret": {
                                "secretName": api.admin_secret_name(spec.topology),
                                "defaultMode": 0o440,
                            },
                        },
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }
