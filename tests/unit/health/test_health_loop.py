"""The pure pieces composed as the operator composes them, against a simulated world, in
virtual time: Monitor -> decide -> start_record -> advance/mark_done -> settle.

The world is an in-test model of a node's pods (hung, slow, in rotation, replaced after a
delete) that produces the Observation a real Prometheus would; it stands in for Kubernetes
and Prometheus only here, in a unit test of pure code (the real parts are exercised by the
integration and e2e suites). One tick is one poll second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from hexagon_operator.health.actions import (
    Action,
    DeletePod,
    EventReason,
    ProbePod,
    ScaleStatefulSet,
    SetInRotation,
    SetWeight,
)
from hexagon_operator.health.cycle import NodePlan, NodeState, WorkResult, complete, plan_cycle
from hexagon_operator.health.metrics import HealMetrics
from hexagon_operator.health.monitor import Monitor
from hexagon_operator.health.plan import PodFacts, ProbeResult
from hexagon_operator.health.policy import NodeView, PodView
from hexagon_operator.health.records import Record, parse_time, read_active, read_history
from hexagon_operator.health.samples import Observation, PipelineStatus, PodKey, PodSignals
from hexagon_operator.health.settings import HealSettings

S = HealSettings(
    window_seconds=30,
    stale_after_seconds=5,
    drain_seconds=2,
    recovery_hold_seconds=10,
    ramp_step_seconds=2,
    cooldown_seconds=60,
)


@dataclass
class Pod:
    uid: str
    ip: str
    ready_at: float = 0.0
    in_rotation: bool = True
    hung: bool = False
    slow: bool = False
    epoch: str | None = None


@dataclass
class World:
    nodes: dict[str, dict[str, Pod]]
    prometheus_up: bool = True
    counter: int = 0
    replicas: dict[str, int] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    born_hung: bool = False  # a bad image: replacements hang too

    @classmethod
    def of(cls, **sizes: int) -> World:
        w = cls({})
        for node, n in sizes.items():
            w.replicas[node] = n
            w.nodes[node] = {f"{node}-{i}": w.new_pod(node, ready_at=0) for i in range(n)}
        return w

    def new_pod(self, node: str, *, ready_at: float) -> Pod:
        self.counter += 1
        pod = Pod(f"uid-{self.counter}", f"10.0.0.{self.counter}", ready_at=ready_at)
        pod.hung = self.born_hung
        return pod

    def observe(self, now: float) -> Observation:
        if not self.prometheus_up:
            return Observation(at=now, status=PipelineStatus.UNREACHABLE, detail="refused")
        pods = {}
        for node, members in self.nodes.items():
            for name, pod in members.items():
                if now < pod.ready_at:
                    continue  # not scraped yet
                traffic = 10.0 if pod.in_rotation else 0.0
                pods[PodKey("ns", node, name)] = PodSignals(
                    p99_seconds=1.5 if pod.slow else 0.05,
                    error_ratio=0.0 if traffic else float("nan"),
                    request_rate=traffic,
                    up=0.0 if pod.hung else 1.0,
                    scrape_age_seconds=0.5,
                )
        return Observation(at=now, status=PipelineStatus.OK, pods=pods)

    def run(self, node: str, action: Action, now: float) -> ProbeResult | None:
        pods = self.nodes[node]
        if isinstance(action, SetInRotation) and action.pod in pods:
            pods[action.pod].in_rotation = action.in_rotation
        elif isinstance(action, SetWeight):
            self.weights[action.pod] = action.weight
        elif isinstance(action, ProbePod):
            pod = pods.get(action.pod)
            if pod is None or pod.hung:
                return ProbeResult(False, error="no answer within 10 s")
            return ProbeResult(True, {"loop_lag_ms": 2})
        elif isinstance(action, DeletePod):
            pod = pods.get(action.pod)
            if pod is not None and pod.uid == action.uid:
                fresh = self.new_pod(node, ready_at=now + 5)
                fresh.in_rotation = False  # the gate starts False until the healer restores
                pods[action.pod] = fresh
        elif isinstance(action, ScaleStatefulSet):
            if action.replicas == 0:
                pods.clear()
            for i in range(len(pods), action.replicas):
                fresh = self.new_pod(node, ready_at=now + 5)
                fresh.epoch = action.epoch
                fresh.in_rotation = False
                pods[f"{node}-{i}"] = fresh
        return None


@dataclass
class Operator:
    world: World
    settings: HealSettings = S
    monitor: Monitor = field(default_factory=lambda: Monitor(S))
    active: dict[str, list[Record]] = field(default_factory=dict)
    history: dict[str, list[Record]] = field(default_factory=dict)
    conditions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: list[tuple[float, EventReason]] = field(default_factory=list)
    actions: list[tuple[float, Action]] = field(default_factory=list)
    max_concurrent: int = 0
    metrics: HealMetrics = field(default_factory=HealMetrics)

    def views(self) -> list[NodeView]:
        return [
            NodeView(
                namespace="ns",
                name=node,
                topology=f"topo-{node}",  # separate topologies unless a test says otherwise
                statefulset=node,
                replicas=self.world.replicas[node],
                pods=tuple(
                    PodView(
                        PodKey("ns", node, n),
                        p.uid,
                        p.ip,
                        ready=p.in_rotation,
                        in_rotation=p.in_rotation,
                    )
                    for n, p in members.items()
                ),
                settings=self.settings,
                active=tuple(self.active.get(node, [])),
                history=tuple(self.history.get(node, [])),
            )
            for node, members in self.world.nodes.items()
        ]

    def tick(self, now: float) -> None:
        observation = self.world.observe(now)
        self.metrics.observe_poll(observation)
        uids = {
            PodKey("ns", node, n): p.uid
            for node, m in self.world.nodes.items()
            for n, p in m.items()
        }
        assessment = self.monitor.update(observation, uids)
        for _ in range(10):  # protocol: go on at once while steps finish within the poll
            states = [
                NodeState(
                    view, self._pod_facts(now, view.name), tuple(self.conditions.get(view.name, []))
                )
                for view in self.views()
            ]
            worked = False
            for plan in plan_cycle(states, assessment, now=now):
                node = plan.key[1]
                self._persist(node, plan)  # "step started" is written before acting
                self.events += [(now, e.reason) for e in plan.events]
                results = []
                for work in plan.work:
                    worked = True
                    probes = {}
                    for action in work.actions:
                        self.actions.append((now, action))
                        result = self.world.run(node, action, now)
                        if result is not None and isinstance(action, ProbePod):
                            probes[action.pod] = result
                    results.append(WorkResult(work.record_id, probe=probes or None))
                self._persist(node, complete(plan, results, now=now))
            if not worked:
                break
        self.max_concurrent = max(self.max_concurrent, sum(len(r) for r in self.active.values()))

    def _persist(self, node: str, plan: NodePlan) -> None:
        status = json.loads(json.dumps(plan.status()))
        self.active[node] = read_active(status)
        self.history[node] = read_history(status)
        self.conditions[node] = [c.__dict__ for c in plan.conditions]
        self.metrics.observe_finished(self.history[node])

    def _pod_facts(self, now: float, node: str) -> dict[str, PodFacts]:
        return {
            n: PodFacts(n, p.uid, p.ip, containers_ready=now >= p.ready_at, epoch=p.epoch)
            for n, p in self.world.nodes[node].items()
        }

    def until(self, start: int, end: int) -> None:
        for t in range(start, end):
            self.tick(float(t))

    def reasons(self) -> list[EventReason]:
        return [r for _, r in self.events]

    def condition(self, node: str, type_: str) -> Mapping[str, Any]:
        return next(c for c in self.conditions[node] if c["type"] == type_)


def test_hung_pod_is_isolated_probed_respawned_and_restored() -> None:
    op = Operator(World.of(a=3))
    op.until(0, 10)
    op.world.nodes["a"]["a-1"].hung = True
    old_uid = op.world.nodes["a"]["a-1"].uid
    op.until(10, 60)
    (rec,) = op.history["a"]
    assert rec["outcome"] == "Restored"
    assert rec["probe"]["a-1"]["ok"] is False
    new = op.world.nodes["a"]["a-1"]
    assert new.uid != old_uid and new.in_rotation
    assert op.world.weights["a-1"] == 100
    assert [r for r in op.reasons() if r != EventReason.METRICS_AVAILABLE] == [
        EventReason.POD_ISOLATED,
        EventReason.PROBE_FAILED,
        EventReason.POD_RESPAWNED,
        EventReason.POD_RESTORED,
    ]
    isolated_at = next(t for t, r in op.events if r is EventReason.POD_ISOLATED)
    assert isolated_at <= 10 + S.consecutive_breaches  # three failed polls, then out
    # nobody else was touched
    assert {getattr(a, "pod", None) for _, a in op.actions} == {"a-1"}
    assert (
        'hexagon_operator_heals_total{outcome="Restored",reason="Restored"} 1'
        in op.metrics.render()
    )
    assert op.metrics.isolation.n == 1 and op.metrics.respawn.n == 1


def test_slow_pod_answering_its_probe_is_kept_out_then_restored_without_respawn() -> None:
    op = Operator(World.of(a=3))
    op.until(0, 5)
    op.world.nodes["a"]["a-2"].slow = True
    op.until(5, 12)
    assert not op.world.nodes["a"]["a-2"].in_rotation
    op.world.nodes["a"]["a-2"].slow = False  # the fault clears while the pod is out
    op.until(12, 60)
    (rec,) = op.history["a"]
    assert rec["outcome"] == "Restored"
    assert not any(isinstance(a, DeletePod) for _, a in op.actions)
    assert EventReason.PROBE_ANSWERED in op.reasons()
    assert op.world.nodes["a"]["a-2"].in_rotation


def test_prometheus_down_means_no_heal_and_metrics_unavailable_then_heal_resumes() -> None:
    op = Operator(World.of(a=3))
    op.until(0, 5)
    op.world.prometheus_up = False
    op.world.nodes["a"]["a-0"].hung = True
    op.until(5, 30)
    assert op.actions == []
    cond = op.condition("a", "MetricsAvailable")
    assert (cond["status"], cond["reason"]) == ("False", "PrometheusUnreachable")
    assert op.reasons().count(EventReason.METRICS_UNAVAILABLE) == 1  # once, not every poll
    assert op.metrics.poll_errors["prometheus-unreachable"] == 25
    op.world.prometheus_up = True
    op.until(30, 40)
    assert any(isinstance(a, SetInRotation) and a.pod == "a-0" for _, a in op.actions)


def test_paused_does_nothing_but_says_so() -> None:
    op = Operator(World.of(a=3), settings=HealSettings(**{**S.__dict__, "paused": True}))
    op.world.nodes["a"]["a-0"].hung = True
    op.until(0, 30)
    assert op.actions == []
    assert op.condition("a", "Healing")["reason"] == "HealPaused"
    assert EventReason.HEAL_BLOCKED in op.reasons()


def test_every_pod_faulty_storm_limits_hold() -> None:
    op = Operator(World.of(a=3, b=3, c=2))
    op.until(0, 5)
    for members in op.world.nodes.values():
        for pod in members.values():
            pod.slow = True  # a shared upstream got slow: every gateway breaches
    op.until(5, 40)
    assert op.max_concurrent == 1
    assert op.history.get("a") or op.active.get("a")  # one diagnostic heal did run
    assert EventReason.CORRELATED_FAILURE in op.reasons()
    blocked = [op.condition(n, "Healing")["reason"] for n in ("b", "c")]
    assert "CorrelatedFailure" in blocked


def test_whole_node_hung_is_scaled_to_zero_and_back() -> None:
    op = Operator(World.of(a=3, b=2))
    op.until(0, 5)
    for pod in op.world.nodes["a"].values():
        pod.hung = True
    op.until(5, 60)
    (rec,) = op.history["a"]
    assert (rec["scope"], rec["outcome"]) == ("Node", "Restored")
    scales = [a for _, a in op.actions if isinstance(a, ScaleStatefulSet)]
    assert [s.replicas for s in scales] == [0, 3]
    assert {p.epoch for p in op.world.nodes["a"].values()} == {scales[0].epoch}
    assert EventReason.NODE_RESPAWNED in op.reasons()
    assert not op.history.get("b")


def test_operator_restarted_at_any_tick_converges_without_repeating_a_delete() -> None:
    for crash_at in range(10, 45):
        op = Operator(World.of(a=3))
        op.until(0, 10)
        op.world.nodes["a"]["a-1"].hung = True
        op.until(10, crash_at)
        # the process dies: memory (window, caches) is gone, status survives via JSON
        restarted = Operator(op.world)
        restarted.active = json.loads(json.dumps(op.active))
        restarted.history = json.loads(json.dumps(op.history))
        restarted.conditions = json.loads(json.dumps(op.conditions))
        restarted.until(crash_at, 90)
        (rec,) = restarted.history["a"]
        assert rec["outcome"] == "Restored", crash_at
        deletes = [a for _, a in op.actions + restarted.actions if isinstance(a, DeletePod)]
        assert len(deletes) == 1, crash_at
        assert op.world.nodes["a"]["a-1"].in_rotation


def test_respawns_that_keep_failing_back_off_and_raise_degraded() -> None:
    op = Operator(World.of(a=3), settings=HealSettings(**{**S.__dict__, "cooldown_seconds": 0}))
    op.until(0, 5)
    op.world.born_hung = True  # a bad image: every replacement hangs too
    op.world.nodes["a"]["a-1"].hung = True
    op.until(5, 600)
    outcomes = [r["outcome"] for r in op.history["a"]]
    assert outcomes and set(outcomes) == {"Failed"}
    starts = [r["startedAt"] for r in op.history["a"]]
    gaps = [b - a for a, b in pairwise(parse_time(t) or 0 for t in starts)]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]  # exponential backoff widens the gaps
    degraded = op.condition("a", "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RespawnsFailing")
    assert EventReason.HEAL_DEGRADED in op.reasons()
    # only the hung pod was ever touched
    assert {getattr(a, "pod", None) for _, a in op.actions} == {"a-1"}
