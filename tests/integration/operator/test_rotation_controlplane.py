"""Rotation and config propagation through the real API server, without a kubelet.

The controller-manager creates the StatefulSet's pod; with no node it stays Pending, so the
test plays the kubelet's part for status only: it starts a real gateway process on a loopback
address and writes that address into the pod's status with ContainersReady=True, as a kubelet
would. Everything else is production: the operator (console script) sees the pod become
ready, pushes it the current config (PUT /config with the topology's admin token) and sets
``hexagon.dev/in-rotation``; a route change in the HexagonNode then reaches the gateway,
and the delay from ``kubectl apply`` to the new route being served is printed (a figure, not
an assertion). Each run uses its own 127.x.y.z address so the fixed admin port 9901 is free.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.operator.opkube import (
    KubeApi,
    get_json,
    install_crd,
    kubectl_ok,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.controlplane
NAME = "rot"


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def manifest(routes: list[str]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "hexagon.dev/v1alpha1",
            "kind": "HexagonNode",
            "metadata": {"name": NAME},
            "spec": {
                "topology": "rot",
                "spoke": "south",
                "replicas": 1,
                # Unschedulable on purpose: when the session's cluster has a node, no kubelet
                # may take this pod over; the test plays the kubelet's part for its status.
                "resources": {"requests": {"cpu": "512", "memory": "64Mi"}},
                "gateway": {
                    "upstreams": [{"name": "void", "endpoints": [{"address": "127.0.0.1:9"}]}],
                    "routes": [
                        {"name": r, "match": {"pathPrefix": f"/{r}"}, "upstream": "void"}
                        for r in routes
                    ],
                },
            },
        }
    )


@contextmanager
def gateway(tmp: Path, *, ip: str, config_text: str, token: str) -> Iterator[None]:
    """The real gateway with the operator's rendered config, bound to ``ip``. It runs in its
    own mount namespace with a tmpfs on /run holding the token at the path the pod's Secret
    volume uses (/var/run/hexagon/token), so the documents the operator pushes are accepted
    unchanged and nothing is written to the host's /run."""
    doc: dict[str, Any] = yaml.safe_load(config_text)
    doc["listen"] = {"data": {"host": ip, "port": 8080}, "admin": {"host": ip, "port": 9901}}
    (tmp / "token").write_text(token)
    (tmp / "gateway.yaml").write_text(yaml.safe_dump(doc))
    exe = Path(sys.executable).with_name("hexagon-gateway")
    script = (
        "mount -t tmpfs tmpfs /run && mkdir -p /run/hexagon && "
        f"cp {tmp / 'token'} /run/hexagon/token && exec {exe} --config {tmp / 'gateway.yaml'}"
    )
    with (tmp / "gateway.log").open("wb") as log:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=log,
        )
        try:
            wait_for(lambda: status_of(f"http://{ip}:9901/healthz") == 200, what="gateway up")
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def config_hash(kc: Path | str, ns: str) -> str:
    sts = get_json(kc, "statefulset", NAME, "-n", ns) or {}
    return str(sts["spec"]["template"]["metadata"]["annotations"]["hexagon.dev/config-hash"])


def pod_condition(kc: Path | str, ns: str, type_: str) -> str | None:
    pod = get_json(kc, "pod", f"{NAME}-0", "-n", ns) or {}
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return str(c["status"])
    return None


def test_pod_enters_rotation_and_gets_route_changes(kube_api: KubeApi, tmp_path: Path) -> None:
    kc = kube_api.kubeconfig
    install_crd(kc)
    ns = kube_api.namespace("rot")
    ip = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(1, 254)}"
    log = tmp_path / "operator.log"
    with running_operator(kc, namespace=ns, log=log, env={"HEXAGON_RESYNC_SECONDS": "5"}):
        try:
            _scenario(kc, ns, ip, tmp_path)
        finally:
            print(log.read_text()[-3000:])


def _scenario(kc: Path | str, ns: str, ip: str, tmp: Path) -> None:
    kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=manifest(["a"]))
    wait_for(lambda: get_json(kc, "pod", f"{NAME}-0", "-n", ns), what="the pod (Pending)")
    cm = wait_for(lambda: get_json(kc, "configmap", f"{NAME}-config", "-n", ns), what="config")
    secret = wait_for(lambda: get_json(kc, "secret", "rot-hexagon-admin", "-n", ns), what="token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    # The pod starts with the config it would read from the mounted ConfigMap.
    with gateway(tmp, ip=ip, config_text=cm["data"]["gateway.yaml"], token=token):
        assert pod_condition(kc, ns, "hexagon.dev/in-rotation") is None
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kubelet_view = {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                ],
                "containerStatuses": [
                    {
                        "name": "gateway",
                        "ready": True,
                        "restartCount": 0,
                        "image": "hexagon/gateway:dev",
                        "imageID": "",
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        }
        kubectl_ok(kc, "patch", "pod", f"{NAME}-0", "-n", ns, "--subresource=status",
                   "--type=merge", "-p", json.dumps(kubelet_view))  # fmt: skip
        ready_at = time.monotonic()
        wait_for(
            lambda: pod_condition(kc, ns, "hexagon.dev/in-rotation") == "True",
            what="the operator to put the pod in rotation",
        )
        print(
            f"FIGURE containers ready -> in rotation: {(time.monotonic() - ready_at) * 1000:.0f} ms"
            " (resolution: one kubectl get, ~100 ms)"
        )
        assert status_of(f"http://{ip}:8080/b") == 404
        uid = (get_json(kc, "pod", f"{NAME}-0", "-n", ns) or {})["metadata"]["uid"]
        hash_before = config_hash(kc, ns)
        start = time.monotonic()
        kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=manifest(["a", "b"]))
        accepted = time.monotonic()  # the API server has stored the change when kubectl returns
        # Poll every 10 ms (not wait_for's 200 ms) so the figure has a useful resolution.
        while status_of(f"http://{ip}:8080/b") in (0, 404):
            assert time.monotonic() - accepted < 60, "route /b never served"
            time.sleep(0.01)
        served = time.monotonic()
        print(
            f"FIGURE route change: served {(served - accepted) * 1000:.0f} ms after the API "
            f"server accepted it ({(served - start) * 1000:.0f} ms including kubectl apply)"
        )
        events = json.loads(kubectl_ok(kc, "get", "events", "-n", ns, "-o", "json"))["items"]
        assert any(e["reason"] == "ConfigPushed" for e in events)
        # A route change is pushed, not rolled out: same pod, same pod-template hash.
        assert (get_json(kc, "pod", f"{NAME}-0", "-n", ns) or {})["metadata"]["uid"] == uid
        assert config_hash(kc, ns) == hash_before
