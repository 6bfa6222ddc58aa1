"""The operator's HTTP port and the heal loop's "metrics unavailable" path, on the real
control plane (no node needed): ``/sd/gateways`` lists the watched gateway pods with their
final labels, ``/metrics`` counts failed Prometheus polls, and a HexagonNode gets
``MetricsAvailable=False`` (never a heal) while Prometheus does not answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.heal.fleet import cond, free_port, http
from tests.integration.operator.opkube import (
    KubeApi,
    get_json,
    install_crd,
    kubectl_ok,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.controlplane


def gateway_pod(name: str, node: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/name": "hexagon-gateway",
                    "app.kubernetes.io/managed-by": "hexagon-operator",
                    "app.kubernetes.io/instance": node,
                    "hexagon.dev/topology": "cp",
                },
            },
            "spec": {"containers": [{"name": "gateway", "image": "example.invalid/gw:1"}]},
        }
    )


NODE = {
    "apiVersion": "hexagon.dev/v1alpha1",
    "kind": "HexagonNode",
    "metadata": {"name": "cpn"},
    "spec": {"topology": "cp", "spoke": "west", "replicas": 1, "image": "example.invalid/gw:1"},
}


def test_sd_metrics_and_prometheus_down(kube_api: KubeApi, tmp_path: Path) -> None:
    kc = kube_api.kubeconfig
    install_crd(kc)
    ns = kube_api.namespace("healcp")
    port = free_port()
    env = {
        "HEXAGON_SD_PORT": str(port),
        # Nothing listens there: Prometheus is "stopped".
        "HEXAGON_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "HEXAGON_POLL_INTERVAL_SECONDS": "1",
    }
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "operator.log"
    with running_operator(kc, namespace=ns, log=log, env=env):
        try:
            kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(NODE))
            # A stand-in pod with a name the node's StatefulSet never uses: the real
            # controller-manager creates cpn-0 and cpn-1 (unscheduled, without an IP).
            kubectl_ok(kc, "apply", "-n", ns, "-f", "-", stdin=gateway_pod("cpn-standin", "cpn"))
            # No node runs it: give it the IP a kubelet would report.
            ip = json.dumps({"status": {"podIP": "10.9.8.7"}})
            kubectl_ok(kc, "patch", "pod", "cpn-standin", "-n", ns, "--subresource=status",
                       "--type=merge", "-p", ip)  # fmt: skip
            wait_for(lambda: http("GET", f"{base}/healthz")[0] == 200, what="/healthz")

            def listed() -> Any:
                status, body = http("GET", f"{base}/sd/gateways")
                return body if status == 200 and body else None

            targets = wait_for(listed, what="the pod in /sd/gateways", timeout=60)
            assert targets == [
                {
                    "targets": ["10.9.8.7:9901"],
                    "labels": {
                        "namespace": ns,
                        "pod": "cpn-standin",
                        "hexagon_node": "cpn",
                        "hexagon_topology": "cp",
                    },
                }
            ]

            def unavailable() -> dict[str, Any] | None:
                c = cond(get_json(kc, "hxn", "cpn", "-n", ns), "MetricsAvailable")
                return c if c.get("status") == "False" else None

            c = wait_for(unavailable, what="MetricsAvailable False", timeout=60)
            assert c["reason"] == "PrometheusUnreachable", c
            node = get_json(kc, "hxn", "cpn", "-n", ns) or {}
            assert not ((node.get("status") or {}).get("heal") or {}).get("active")
            status, text = http("GET", f"{base}/metrics")
            assert status == 200
            assert (
                'hexagon_operator_prometheus_query_errors_total{status="prometheus-unreachable"}'
                in str(text)
            )
            assert "hexagon_operator_heals_total" in str(text)
            reasons = [e.get("reason") for e in (get_json(kc, "events", "-n", ns) or {})["items"]]
            assert "MetricsUnavailable" in reasons
        finally:
            print(log.read_text()[-5000:])
