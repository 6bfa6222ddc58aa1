"""The operator as in production, on the real single-node cluster.

``hexagon-operator`` runs as a subprocess with a kubeconfig; the test only uses kubectl and
HTTP to pod IPs on the node's bridge, like a user would: apply a HexagonNode -> children
exist with the right fields -> pods Running, in rotation, Ready -> a route change reaches the
pods without restarting them (the delay is measured and printed, never asserted) ->
``kubectl scale hxn/NAME --replicas=3`` -> a spec update rolls out -> delete cleans up.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.operator.opkube import (
    KubeNode,
    get_json,
    install_crd,
    kubectl,
    kubectl_ok,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.node

NAME = "edge"
SELECTOR = f"app.kubernetes.io/instance={NAME}"


def node_manifest(*, image: str, routes: list[dict[str, Any]], cpu: str = "50m") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "hexagon.dev/v1alpha1",
            "kind": "HexagonNode",
            "metadata": {"name": NAME},
            "spec": {
                "topology": "itest",
                "spoke": "north",
                "replicas": 2,
                "image": image,
                "imagePullPolicy": "Never",
                "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}},
                "gateway": {
                    # Nothing listens there: a matched route answers 502/503, an unmatched 404.
                    "upstreams": [{"name": "void", "endpoints": [{"address": "127.0.0.1:9"}]}],
                    "routes": routes,
                },
            },
        }
    )


ROUTE_A = {"name": "a", "match": {"pathPrefix": "/a"}, "upstream": "void"}
ROUTE_B = {"name": "b", "match": {"pathPrefix": "/b"}, "upstream": "void"}


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def pods(kubeconfig: Path | str, namespace: str) -> list[dict[str, Any]]:
    listed = get_json(kubeconfig, "pods", "-n", namespace, "-l", SELECTOR)
    return list((listed or {}).get("items") or [])


def cond(obj: dict[str, Any], type_: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return str(c.get("status"))
    return None


def all_ready(kubeconfig: Path | str, namespace: str, count: int) -> list[dict[str, Any]] | None:
    items = [p for p in pods(kubeconfig, namespace) if not p["metadata"].get("deletionTimestamp")]
    if len(items) != count:
        return None
    ok = all(
        p["status"].get("phase") == "Running"
        and cond(p, "hexagon.dev/in-rotation") == "True"
        and cond(p, "Ready") == "True"
        for p in items
    )
    return items if ok else None


def node_status(kubeconfig: Path | str, namespace: str) -> dict[str, Any]:
    return dict((get_json(kubeconfig, "hxn", NAME, "-n", namespace) or {}).get("status") or {})


def test_node_lifecycle(kube_node: KubeNode, tmp_path: Path) -> None:
    kc = kube_node.kubeconfig
    install_crd(kc)
    ns = kube_node.namespace("op")
    image = kube_node.image("gateway")
    log = tmp_path / "operator.log"
    env = {"HEXAGON_GATEWAY_IMAGE": image, "HEXAGON_RESYNC_SECONDS": "5"}
    with running_operator(kc, namespace=ns, log=log, env=env):
        try:
            _lifecycle(kc, ns, image)
        finally:
            print(log.read_text()[-4000:])


def _lifecycle(kc: Path | str, ns: str, image: str) -> None:
    kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=node_manifest(image=image, routes=[ROUTE_A]))

    # -- children exist, with the fields that matter ---------------------------------------
    sts = wait_for(lambda: get_json(kc, "statefulset", NAME, "-n", ns), what="the StatefulSet")
    node = get_json(kc, "hxn", NAME, "-n", ns)
    assert node is not None
    owner = sts["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "HexagonNode", NAME, node["metadata"]["uid"], True,
    )  # fmt: skip
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    template = sts["spec"]["template"]
    assert template["spec"]["readinessGates"] == [{"conditionType": "hexagon.dev/in-rotation"}]
    assert template["metadata"]["labels"]["hexagon.dev/spoke"] == "north"
    with_fields = get_json(kc, "statefulset", NAME, "-n", ns, "--show-managed-fields") or {}
    managers = {m["manager"] for m in with_fields["metadata"]["managedFields"]}
    assert "hexagon-operator" in managers
    for kind, name in [
        ("service", NAME),
        ("service", f"{NAME}-headless"),
        ("configmap", f"{NAME}-config"),
        ("poddisruptionbudget", NAME),
        ("secret", "itest-hexagon-admin"),
    ]:
        wait_for(partial(get_json, kc, kind, name, "-n", ns), what=f"{kind}/{name}")
    cm = get_json(kc, "configmap", f"{NAME}-config", "-n", ns)
    assert cm is not None
    doc = yaml.safe_load(cm["data"]["gateway.yaml"])
    assert doc["node"]["name"] == NAME and [r["name"] for r in doc["routes"]] == ["a"]

    # -- pods Running, in rotation, Ready; status follows ------------------------------------
    ready = wait_for(lambda: all_ready(kc, ns, 2), what="2 pods Running, in rotation, Ready")
    wait_for(
        lambda: (
            node_status(kc, ns).get("readyReplicas") == 2
            and cond({"status": node_status(kc, ns)}, "Ready") == "True"
        ),
        what="HexagonNode status Ready with readyReplicas 2",
    )
    printed = kubectl_ok(kc, "get", "hxn", "-n", ns)
    print(printed)
    assert "Healthy" in printed

    # -- a route change reaches the pods without a restart ---------------------------------
    ips = [p["status"]["podIP"] for p in ready]
    before = {
        p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"] for p in ready
    }
    hash_before = template["metadata"]["annotations"]["hexagon.dev/config-hash"]
    assert all(http_status(f"http://{ip}:8080/b") == 404 for ip in ips)
    manifest = node_manifest(image=image, routes=[ROUTE_A, ROUTE_B])
    invoked = time.monotonic()
    kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=manifest)
    start = time.monotonic()  # the API server has stored the change when kubectl returns
    print(f"kubectl apply itself took {(start - invoked) * 1000:.0f} ms")
    reached: dict[str, float] = {}
    while len(reached) < len(ips) and time.monotonic() - start < 120:
        for ip in ips:
            if ip not in reached and http_status(f"http://{ip}:8080/b") not in (0, 404):
                reached[ip] = time.monotonic() - start
        time.sleep(0.01)
    figures = {ip: f"{t * 1000:.0f} ms" for ip, t in reached.items()}
    print(f"FIGURE route change served by each pod, after the API server accepted it: {figures}")
    assert len(reached) == len(ips), f"route /b never served by {set(ips) - set(reached)}"
    after = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"]
             for p in pods(kc, ns)}  # fmt: skip
    assert after == before, "a route change must not restart or replace pods"
    sts = get_json(kc, "statefulset", NAME, "-n", ns) or {}
    assert sts["spec"]["template"]["metadata"]["annotations"]["hexagon.dev/config-hash"] == (
        hash_before
    )

    # -- kubectl scale through the scale subresource ---------------------------------------
    kubectl_ok(kc, "scale", f"hxn/{NAME}", "-n", ns, "--replicas=3")
    wait_for(lambda: all_ready(kc, ns, 3), what="3 pods Ready after kubectl scale")
    wait_for(lambda: node_status(kc, ns).get("readyReplicas") == 3, what="status readyReplicas 3")
    scale_path = f"/apis/hexagon.dev/v1alpha1/namespaces/{ns}/hexagonnodes/{NAME}/scale"
    scale = json.loads(kubectl_ok(kc, "get", "--raw", scale_path))
    assert scale["status"]["replicas"] == 3 and SELECTOR in scale["status"]["selector"]

    # -- a spec update rolls out (new pods, all Ready) ---------------------------------------
    old_uids = {p["metadata"]["uid"] for p in pods(kc, ns)}
    kubectl_ok(kc, "patch", f"hxn/{NAME}", "-n", ns, "--type=merge",
               "-p", '{"spec": {"resources": {"requests": {"cpu": "60m"}}}}')  # fmt: skip

    def rolled() -> bool:
        items = all_ready(kc, ns, 3)
        return bool(items) and not ({p["metadata"]["uid"] for p in items or []} & old_uids)

    wait_for(rolled, what="rollout to 3 new Ready pods", timeout=240)
    cpu = (get_json(kc, "statefulset", NAME, "-n", ns) or {})["spec"]["template"]["spec"][
        "containers"
    ][0]["resources"]["requests"]["cpu"]
    assert cpu == "60m"
    wait_for(
        lambda: (
            cond({"status": node_status(kc, ns)}, "Progressing") == "False"
            and node_status(kc, ns).get("observedGeneration")
            == (get_json(kc, "hxn", NAME, "-n", ns) or {})["metadata"]["generation"]
        ),
        what="Progressing False at the new generation",
    )

    # -- delete cleans up -------------------------------------------------------------------
    kubectl_ok(kc, "delete", f"hxn/{NAME}", "-n", ns, "--wait=true", "--timeout=60s")

    def gone() -> bool:
        for kind in ("statefulset", "service", "configmap", "poddisruptionbudget"):
            listed = get_json(kc, kind, "-n", ns, "-l", SELECTOR) or {}
            if listed.get("items"):
                return False
        return kubectl(kc, "get", "secret", "itest-hexagon-admin", "-n", ns).returncode != 0

    wait_for(gone, what="children garbage-collected after delete")
