"""Self-heal with real parts (issue 5 item 6): the operator as a subprocess on the real
single-node cluster, gateway pods, a real Prometheus discovering them through the operator's
HTTP-SD endpoint with a 1 s scrape, real traffic, faults injected through the admin API.

Assertions are on what a user sees - the HexagonNode's status and conditions, Events, pod
readiness, the Service's endpoints - and every wait is bounded; nothing asserts on elapsed
time ("kept out" is checked after the operator has polled a given number of times).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.integration.heal.fleet import Fleet, cond, describe, http, node_manifest, traffic
from tests.integration.operator.opkube import KubeNode, install_crd

pytestmark = [pytest.mark.node, pytest.mark.prometheus]


@pytest.fixture
def fleet(
    kube_node: KubeNode, prometheus: Callable[[Mapping[str, Any]], Any], tmp_path: Path
) -> Iterator[tuple[Fleet, Any]]:
    install_crd(kube_node.kubeconfig)
    f = Fleet(kube_node.kubeconfig, kube_node.namespace("heal"), kube_node.image("gateway"),
              tmp_path)  # fmt: skip
    prom = prometheus(f.scrape_config())
    f.prometheus_url = prom.url
    f.start_operator()
    try:
        yield f, prom
    except BaseException:
        raise
    finally:
        print(f.operator_logs())
        f.close()


def polls(f: Fleet) -> int:
    """The operator's own count of heal-loop polls (its /metrics)."""
    status, text = http("GET", f"http://127.0.0.1:{f.sd_port}/metrics")
    for line in str(text).splitlines() if status == 200 else []:
        if line.startswith("hexagon_operator_polls_total "):
            return int(float(line.split()[1]))
    return -1


def wait_polls(f: Fleet, n: int) -> None:
    start = polls(f)
    f.wait(lambda: polls(f) >= start + n, f"{n} more heal-loop polls")


def records(f: Fleet, node: str, pod: str, *, history: bool) -> list[dict[str, Any]]:
    status = f.node(node).get("status") or {}
    source = status.get("healHistory") if history else (status.get("heal") or {}).get("active")
    return [r for r in source or [] if pod in [p["name"] for p in r["pods"]]]


def gate(f: Fleet, pod: str) -> str | None:
    return cond(f.pod(pod), "hexagon.dev/in-rotation").get("status")


def event_messages(f: Fleet, reason: str, pod: str) -> list[str]:
    return [e["message"] for e in f.events(reason) if pod in e.get("message", "")]


def setup_node(f: Fleet, name: str, *, replicas: int = 3, **spec: Any) -> list[dict[str, Any]]:
    f.apply(node_manifest(name, image=f.image, replicas=replicas, **spec))
    ready: list[dict[str, Any]] = f.wait(
        lambda: f.ready_pods(name, replicas), f"{replicas} pods of {name} Ready", 180
    )
    return ready


def healing_message(f: Fleet, node: str) -> str:
    return str(cond(f.node(node), "Healing").get("message", ""))


def metrics_available(f: Fleet, node: str) -> bool:
    return cond(f.node(node), "MetricsAvailable").get("status") == "True"


def test_latency_hang_and_operator_restart(fleet: tuple[Fleet, Any]) -> None:
    f, _prom = fleet
    node = "lat"
    pods = setup_node(f, node)
    ip = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    uid = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
    with traffic(f):
        f.wait(lambda: metrics_available(f, node), "MetricsAvailable True", 90)
        try:
            _latency_isolated_probed_kept_out_restored(f, node, f"{node}-1", ip, uid)
            _hang_probe_fails_respawned_restored(f, node, f"{node}-2", ip, uid)
            _operator_killed_between_steps_resumes(f, node, f"{node}-0", ip, uid)
        except AssertionError:
            print(describe(f, node))
            raise


def _latency_isolated_probed_kept_out_restored(
    f: Fleet, node: str, pod: str, ip: dict[str, str], uid: dict[str, str]
) -> None:
    f.fault(ip[pod], {"latencyMs": 1200})
    f.wait(lambda: gate(f, pod) == "False", f"{pod} out of rotation")
    f.wait(lambda: ip[pod] not in f.endpoints(node), f"{pod} out of the Service's endpoints")
    assert event_messages(f, "PodIsolated", pod), "PodIsolated Event"
    (isolated,) = f.events("PodIsolated")
    assert "300" in isolated["message"], f"the Event names the threshold: {isolated['message']}"
    f.wait(lambda: event_messages(f, "ProbeAnswered", pod), "ProbeAnswered Event")
    (rec,) = records(f, node, pod, history=False)
    assert rec["probe"][pod]["ok"] is True
    assert (f.node(node)["status"].get("weights") or {}).get(pod) == 0
    # Kept out while it is still slow: more polls than the recovery hold, still out, not
    # respawned (it answered its probe).
    wait_polls(f, 10)
    assert gate(f, pod) == "False"
    assert f.pod(pod)["metadata"]["uid"] == uid[pod]
    (rec,) = records(f, node, pod, history=False)
    assert rec["step"] == "ProbeAnswered"
    f.fault(ip[pod], None)
    f.wait(lambda: records(f, node, pod, history=True), f"{pod}'s heal finished", 90)
    (done,) = records(f, node, pod, history=True)
    assert done["outcome"] == "Restored", done
    assert [s["step"] for s in done["steps"]][:4] == [
        "Isolating", "Isolated", "Probing", "ProbeAnswered",
    ]  # fmt: skip
    assert f.pod(pod)["metadata"]["uid"] == uid[pod], "restored without a respawn"
    f.wait(lambda: gate(f, pod) == "True", f"{pod} back in rotation")
    f.wait(lambda: ip[pod] in f.endpoints(node), f"{pod} back in the endpoints")
    assert (f.node(node)["status"].get("weights") or {}).get(pod) == 100
    assert event_messages(f, "PodRestored", pod)
    assert not event_messages(f, "PodRespawned", pod)


def _hang_probe_fails_respawned_restored(
    f: Fleet, node: str, pod: str, ip: dict[str, str], uid: dict[str, str]
) -> None:
    f.fault(ip[pod], {"hang": True})
    f.wait(lambda: event_messages(f, "PodIsolated", pod), f"{pod} isolated")
    f.wait(lambda: event_messages(f, "ProbeFailed", pod), f"{pod}'s probe failed")
    f.wait(lambda: f.pod(pod).get("metadata", {}).get("uid") not in (None, uid[pod]),
           f"{pod} replaced", 120)  # fmt: skip
    f.wait(lambda: records(f, node, pod, history=True), f"{pod}'s heal finished", 120)
    (done,) = records(f, node, pod, history=True)
    assert done["outcome"] == "Restored", done
    assert done["probe"][pod]["ok"] is False
    assert done["respawned"][0]["uid"] != uid[pod]
    new = f.wait(lambda: f.ready_pods(node, 3), "3 pods Ready again")
    new_ip = next(p["status"]["podIP"] for p in new if p["metadata"]["name"] == pod)
    f.wait(lambda: new_ip in f.endpoints(node), f"respawned {pod} in the endpoints")
    assert event_messages(f, "PodRespawned", pod) and event_messages(f, "PodRestored", pod)
    ip[pod], uid[pod] = (
        new_ip,
        next(p["metadata"]["uid"] for p in new if p["metadata"]["name"] == pod),
    )


def _operator_killed_between_steps_resumes(
    f: Fleet, node: str, pod: str, ip: dict[str, str], uid: dict[str, str]
) -> None:
    f.fault(ip[pod], {"hang": True})
    f.wait(lambda: event_messages(f, "PodIsolated", pod), f"{pod} isolated")
    f.kill_operator()
    (rec,) = records(f, node, pod, history=False)  # the heal is on record, not finished
    assert gate(f, pod) == "False"
    f.start_operator()
    f.wait(lambda: records(f, node, pod, history=True), f"{pod}'s heal finished", 150)
    (done,) = records(f, node, pod, history=True)
    assert done["id"] == rec["id"] and done["outcome"] == "Restored", done
    assert len(event_messages(f, "PodIsolated", pod)) == 1, "a finished step is never repeated"
    new = f.wait(lambda: f.ready_pods(node, 3), "3 pods Ready after the resumed heal")
    assert next(p for p in new if p["metadata"]["name"] == pod)["metadata"]["uid"] != uid[pod]


def test_no_heal_without_metrics_or_when_paused(fleet: tuple[Fleet, Any]) -> None:
    f, prom = fleet
    node = "quiet"
    pods = setup_node(f, node, replicas=2)
    ip = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    pod = f"{node}-1"
    with traffic(f):
        f.wait(lambda: metrics_available(f, node), "MetricsAvailable True", 90)
        try:
            # Prometheus stopped: metrics unknown, no heal, the condition says why.
            prom.stop()
            f.wait(lambda: not metrics_available(f, node), "MetricsAvailable False")
            c = cond(f.node(node), "MetricsAvailable")
            assert c["reason"] == "PrometheusUnreachable" and "Prometheus" in c["message"], c
            assert f.events("MetricsUnavailable")
            f.fault(ip[pod], {"latencyMs": 1200})
            wait_polls(f, 6)
            assert gate(f, pod) == "True"
            assert not records(f, node, pod, history=False)
            assert not f.events("PodIsolated")
            # Paused: metrics flow again and the pod breaches, but nothing starts.
            f.patch_self_heal(node, {"paused": True})
            prom.start()
            f.wait(lambda: metrics_available(f, node), "MetricsAvailable True again", 90)
            f.wait(lambda: cond(f.node(node), "Healing").get("reason") == "HealPaused",
                   "Healing False/HealPaused")  # fmt: skip
            wait_polls(f, 8)
            assert gate(f, pod) == "True"
            assert not records(f, node, pod, history=False)
            assert not f.events("PodIsolated")
            assert cond(f.node(node), "Healing")["status"] == "False"
        except AssertionError:
            print(describe(f, node))
            raise


def test_storm_limits_hold_when_every_pod_is_faulty(fleet: tuple[Fleet, Any]) -> None:
    f, _prom = fleet
    nodes = {"sa": "north", "sb": "south"}
    ips: dict[str, str] = {}
    for name, spoke in nodes.items():
        # Paused until every pod breaches: otherwise the first node to cross the threshold
        # alone is (rightly) respawned as a whole before the second one breaches too.
        f.apply(node_manifest(name, image=f.image, replicas=2, spoke=spoke,
                              self_heal={"paused": True}))  # fmt: skip
    for name in nodes:
        pods = f.wait(lambda n=name: f.ready_pods(n, 2), f"pods of {name} Ready", 180)
        ips.update({p["metadata"]["name"]: p["status"]["podIP"] for p in pods})
    with traffic(f):
        for name in nodes:
            f.wait(lambda n=name: metrics_available(f, n), f"MetricsAvailable on {name}", 90)
        for address in ips.values():
            f.fault(address, {"latencyMs": 1200})
        try:
            for name in nodes:
                f.wait(lambda n=name: "breaches but" in healing_message(f, n),
                       f"{name}'s pods breaching (held by the pause)", 90)  # fmt: skip
            for name in nodes:
                f.patch_self_heal(name, {"paused": False})
            f.wait(lambda: f.events("PodIsolated"), "the one diagnostic heal", 90)
            most_out = 0
            start = polls(f)
            while polls(f) < start + 12:
                out = [p for p in ips if gate(f, p) == "False"]
                most_out = max(most_out, len(out))
                assert len(out) <= 1, f"storm limit broken: {out} out of rotation at once"
            assert most_out == 1
            reasons = {cond(f.node(n), "Healing").get("reason") for n in nodes}
            assert "CorrelatedFailure" in reasons or f.events("CorrelatedFailure"), reasons
            assert not f.events("NodeRespawned") and not f.events("PodRespawned")
        except AssertionError:
            for name in nodes:
                print(describe(f, name))
            raise
        finally:
            for address in ips.values():
                f.fault(address, None)
