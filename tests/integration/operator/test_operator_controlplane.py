"""The operator as in production against the real control plane (no kubelet needed): children
and their fields, the admin token generated once, spoke conflicts reported on both nodes,
scale through the subresource, status written only on change, and garbage collection."""

from __future__ import annotations

import base64
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.operator.opkube import (
    KubeApi,
    get_json,
    install_crd,
    kubectl,
    kubectl_ok,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.controlplane


def manifest(name: str, spoke: str, **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "hexagon.dev/v1alpha1",
            "kind": "HexagonNode",
            "metadata": {"name": name},
            "spec": {"topology": "cp", "spoke": spoke, **spec},
        }
    )


def conditions(kc: Path | str, ns: str, name: str) -> dict[str, dict[str, Any]]:
    node = get_json(kc, "hxn", name, "-n", ns) or {}
    return {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []}


def conflict_of(kc: Path | str, ns: str, name: str) -> dict[str, Any] | None:
    found = conditions(kc, ns, name).get("SpokeConflict")
    return found if found and found["status"] == "True" else None


def token(kc: Path | str, ns: str) -> str:
    secret = get_json(kc, "secret", "cp-hexagon-admin", "-n", ns) or {}
    raw = (secret.get("data") or {}).get("token", "")
    return base64.b64decode(raw).decode() if raw else ""


def test_operator_on_the_control_plane(kube_api: KubeApi, tmp_path: Path) -> None:
    kc = kube_api.kubeconfig
    install_crd(kc)
    ns = kube_api.namespace("opcp")
    log = tmp_path / "operator.log"
    with running_operator(kc, namespace=ns, log=log, env={"HEXAGON_RESYNC_SECONDS": "2"}):
        try:
            _scenario(kc, ns)
        finally:
            print(log.read_text()[-4000:])


def _scenario(kc: Path | str, ns: str) -> None:
    kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=manifest("west", "west", replicas=1))
    for kind, name in [
        ("statefulset", "west"),
        ("service", "west"),
        ("service", "west-headless"),
        ("configmap", "west-config"),
        ("poddisruptionbudget", "west"),
    ]:
        obj = wait_for(partial(get_json, kc, kind, name, "-n", ns), what=f"{kind}/{name}")
        owners = obj["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["controller"]) for o in owners] == [
            ("HexagonNode", "west", True)
        ]
    first = wait_for(lambda: token(kc, ns), what="the admin token")

    # Status by the conventions, with the selector the scale subresource reports.
    conds = wait_for(lambda: conditions(kc, ns, "west") or None, what="conditions")
    assert conds["Degraded"]["status"] == "False" and conds["SpokeConflict"]["status"] == "False"
    node = get_json(kc, "hxn", "west", "-n", ns) or {}
    assert node["status"]["selector"] == (
        "app.kubernetes.io/instance=west,app.kubernetes.io/name=hexagon-gateway"
    )
    assert node["status"]["observedGeneration"] == node["metadata"]["generation"]

    # The token is generated once: an update of the node does not regenerate it.
    kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=manifest("west", "west", replicas=1,
                                                                 ringLevel=2))  # fmt: skip
    wait_for(
        lambda: (
            (get_json(kc, "statefulset", "west", "-n", ns) or {})["spec"]["template"]["metadata"][
                "labels"
            ]["hexagon.dev/ring"]
            == "2"
        ),
        what="ring label rolled into the pod template",
    )
    assert token(kc, ns) == first

    # kubectl scale goes through the scale subresource to the StatefulSet.
    kubectl_ok(kc, "scale", "hxn/west", "-n", ns, "--replicas=3")
    wait_for(
        lambda: (get_json(kc, "statefulset", "west", "-n", ns) or {})["spec"]["replicas"] == 3,
        what="StatefulSet scaled to 3",
    )

    # A second node claiming the same spoke: both report the conflict.
    kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=manifest("west-2", "west", replicas=0))
    for name, other in (("west", "west-2"), ("west-2", "west")):
        conflict = wait_for(partial(conflict_of, kc, ns, name), what=f"SpokeConflict on {name}")
        assert other in conflict["message"] and conflict["reason"] == "SpokeConflict"
    events = json.loads(kubectl_ok(kc, "get", "events", "-n", ns, "-o", "json"))["items"]
    assert any(e["reason"] == "SpokeConflict" and e["type"] == "Warning" for e in events)
    kubectl_ok(kc, "delete", "hxn/west-2", "-n", ns, "--wait=true", "--timeout=60s")
    wait_for(
        lambda: (conditions(kc, ns, "west").get("SpokeConflict") or {}).get("status") == "False",
        what="conflict cleared after the second node is gone",
    )

    # Status is written only on change: once settled, a quiet period of two resync periods
    # leaves resourceVersion alone. Settling may take a moment on a loaded machine (the
    # deletion above still echoes); a writer on every poll or resync never gets quiet.
    def quiet_for_five_seconds() -> bool | None:
        version = (get_json(kc, "hxn", "west", "-n", ns) or {})["metadata"]["resourceVersion"]
        time.sleep(5)  # asserts absence of writes over two resyncs, not a duration
        now = (get_json(kc, "hxn", "west", "-n", ns) or {})["metadata"]["resourceVersion"]
        return True if now == version else None

    wait_for(quiet_for_five_seconds, what="no status writes while nothing changes", timeout=60)

    # Delete: the finalizer is released and the garbage collector removes the children.
    kubectl_ok(kc, "delete", "hxn/west", "-n", ns, "--wait=true", "--timeout=60s")
    wait_for(
        lambda: all(
            kubectl(kc, "get", kind, name, "-n", ns).returncode != 0
            for kind, name in [
                ("statefulset", "west"),
                ("service", "west"),
                ("configmap", "west-config"),
                ("secret", "cp-hexagon-admin"),
            ]
        ),
        what="children garbage-collected",
    )
