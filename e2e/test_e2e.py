"""End to end, as a user runs Hexagon: chart, sample hexagon, traffic, a fault, the heal.

Runs on the real single-node cluster (kubelet, containerd, CNI, kube-proxy, CoreDNS) with the
images built here, the chart's bundled Prometheus and the operator in its pod.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from e2e.scenario import Hexagon, Traffic, crd_names
from testenv.fixtures import KubeHandle

pytestmark = [pytest.mark.e2e, pytest.mark.node]


@pytest.fixture(scope="module")
def hexagon(kube_node_module: KubeHandle) -> Iterator[Hexagon]:
    hx = Hexagon(kube_node_module.cluster, namespace="demo", log=lambda line: print(line))
    hx.load_images()
    hx.install()
    hx.apply_sample()
    hx.wait("all six HexagonNodes Ready", hx.all_ready, timeout=300, every=2)
    print(hx.get_hxn())
    yield hx


def test_full_hexagon_converges(hexagon: Hexagon) -> None:
    nodes = hexagon.nodes()
    assert sorted(n["spec"]["spoke"] for n in nodes) == sorted(
        ["north", "northeast", "southeast", "south", "southwest", "west"]
    )
    table = hexagon.get_hxn()
    for column in ("SPOKE", "RING", "REPLICAS", "READY", "HEALTH"):
        assert column in table.splitlines()[0]


def test_traffic_through_north_reaches_the_upstream(hexagon: Hexagon) -> None:
    traffic = Traffic(hexagon.client_url("demo-north"), rate=20, limit_seconds=5).start()
    time.sleep(3)
    traffic.stop()
    assert traffic.samples and not traffic.failures(), traffic.failures()[:5]


def test_helm_test_reaches_the_operator_and_a_gateway(hexagon: Hexagon) -> None:
    out = hexagon.helm_test()
    assert "Phase:          Succeeded" in out or "Phase: Succeeded" in out, out
    assert "operator 200" in out and "gateway 200" in out, out


def test_hung_gateway_pod_is_isolated_probed_respawned_and_restored(hexagon: Hexagon) -> None:
    node = "demo-north"
    victim = hexagon.pods(node)[0]
    events_before = len(hexagon.events(node))
    traffic = Traffic(hexagon.client_url(node), rate=40, limit_seconds=240).start()
    try:
        time.sleep(3)
        injected = time.monotonic()
        hexagon.inject(victim, {"hang": True})
        record = hexagon.follow_heal(node, since_events=events_before, timeout=180)
        time.sleep(3)
    finally:
        traffic.stop()
    assert record.get("outcome") in ("Succeeded", "Done", "Restored"), record
    replacement = {p["metadata"]["name"]: p for p in hexagon.pods(node)}[victim["metadata"]["name"]]
    assert replacement["metadata"]["uid"] != victim["metadata"]["uid"], "the pod was respawned"
    reasons = [e["reason"] for e in hexagon.events(node)[events_before:]]
    for reason in ("PodIsolated", "ProbeFailed", "PodRespawned", "PodRestored"):
        assert reason in reasons, reasons
    tail = [o for t, o in traffic.samples if t > traffic.samples[-1][0] - 2]
    assert tail and all(o == 200 for o in tail), "traffic continues after the heal"
    print(
        f"client-visible error window: {traffic.error_window(injected):.2f} s "
        f"({len(traffic.failures(injected))} failed of {len(traffic.samples)})"
    )
    print(f"heal record: {record}")


def test_without_prometheus_nothing_is_healed_and_the_condition_says_why(hexagon: Hexagon) -> None:
    node = "demo-south"
    prom = "deployment/hexagon-prometheus"
    hexagon.kubectl("scale", prom, "-n", "hexagon-system", "--replicas=0")
    try:

        def metrics_unavailable() -> bool:
            status = hexagon.json("get", "hxn", node, "-n", hexagon.ns)["status"]
            return any(
                c["type"] == "MetricsAvailable" and c["status"] == "False"
                for c in status.get("conditions", [])
            )

        hexagon.wait("MetricsAvailable=False", metrics_unavailable, timeout=90)
        victim = hexagon.pods(node)[0]
        before = len(hexagon.heal_history(node))
        hexagon.inject(victim, {"latencyMs": 2000})
        time.sleep(15)
        status = hexagon.json("get", "hxn", node, "-n", hexagon.ns)["status"]
        assert not (status.get("heal") or {}).get("active"), status.get("heal")
        assert len(hexagon.heal_history(node)) == before
        hexagon.inject(victim, {})
    finally:
        hexagon.kubectl("scale", prom, "-n", "hexagon-system", "--replicas=1")


def test_uninstall_and_crd_removal_leave_nothing_behind(hexagon: Hexagon) -> None:
    hexagon.uninstall()
    crds = hexagon.kubectl("get", "crd", "-o", "name")
    for name in crd_names():
        assert name not in crds
    assert "hexagon" not in hexagon.kubectl("get", "clusterroles", "-o", "name")
    assert hexagon.kubectl("get", "namespace", "demo", check=False).strip() == ""
