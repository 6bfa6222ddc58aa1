"""The adapter's pure parts: API paths per kind and mapping of API errors."""

from __future__ import annotations

import json

import pytest
from hexagon_operator import kube
from kubernetes.client.exceptions import ApiException


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("v1", "ConfigMap", "ns", "c"), "/api/v1/namespaces/ns/configmaps/c", id="cm"),
        pytest.param(
            ("apps/v1", "StatefulSet", "ns", "s"),
            "/apis/apps/v1/namespaces/ns/statefulsets/s",
            id="sts",
        ),
        pytest.param(
            ("policy/v1", "PodDisruptionBudget", "ns", "p"),
            "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/p",
            id="pdb",
        ),
        pytest.param(("v1", "Pod", "ns"), "/api/v1/namespaces/ns/pods", id="pod-list"),
        pytest.param(
            ("hexagon.dev/v1alpha1", "HexagonNode", "ns", "n", "status"),
            "/apis/hexagon.dev/v1alpha1/namespaces/ns/hexagonnodes/n/status",
            id="node-status",
        ),
        pytest.param(
            ("v1", "Pod", "ns", "p-0", "status"), "/api/v1/namespaces/ns/pods/p-0/status", id="ps"
        ),
    ],
)
def test_path(args: tuple[str, ...], expected: str) -> None:
    api_version, kind, namespace, *rest = args
    name, sub = [*rest, "", ""][:2]
    assert kube.path(api_version, kind, namespace=namespace, name=name, sub=sub) == expected


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        pytest.param(404, kube.NotFound, id="404-not-found"),
        pytest.param(409, kube.Conflict, id="409-conflict"),
        pytest.param(422, kube.KubeError, id="422-invalid"),
        pytest.param(403, kube.KubeError, id="403-forbidden"),
    ],
)
def test_error_mapping(status: int, kind: type[kube.KubeError]) -> None:
    body = json.dumps({"reason": "Why", "message": "what happened"})
    err = kube._error(ApiException(status=status, reason="HTTP", body=body))
    assert type(err) is kind
    assert (err.status, err.reason, err.message) == (status, "Why", "what happened")


def test_error_without_json_body_keeps_the_text() -> None:
    err = kube._error(ApiException(status=500, reason="Internal", body="boom"))
    assert (type(err), err.reason, err.message) == (kube.KubeError, "Internal", "boom")
