"""Storm rules as tables: which heals start, which are blocked and why, and the conditions
and Events that say so. Virtual time: ``NOW`` and history timestamps are plain numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hexagon_operator.health.actions import EventReason
from hexagon_operator.health.conditions import ConditionInput, condition_events
from hexagon_operator.health.policy import (
    NodeView,
    PodView,
    allowed_unavailable,
    backoff_seconds,
    decide,
    start_record,
)
from hexagon_operator.health.records import Scope, iso
from hexagon_operator.health.samples import PodKey
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.verdicts import (
    Assessment,
    Availability,
    Code,
    Finding,
    Kind,
    Verdict,
)

NOW = 10_000.0
SLOW = Verdict(Kind.BREACHING, (Finding(Code.P99_ABOVE_THRESHOLD, "p99", "slow", 1200, 800),))
HUNG = Verdict(Kind.BREACHING, (Finding(Code.SCRAPE_FAILING, "up", "hung", 0, 1),))
FINE = Verdict(Kind.HEALTHY)
FLOWING = Availability("True", Code.METRICS_FLOWING, "ok")
DOWN = Availability("False", Code.PROMETHEUS_UNREACHABLE, "Prometheus did not answer")


def node(
    name: str,
    n: int,
    *,
    topology: str = "blue",
    settings: HealSettings | None = None,
    not_ready: Sequence[int] = (),
    active: Sequence[Mapping[str, Any]] = (),
    history: Sequence[Mapping[str, Any]] = (),
) -> NodeView:
    pods = tuple(
        PodView(
            PodKey("ns", name, f"{name}-{i}"),
            f"uid-{name}-{i}",
            f"10.0.0.{i}",
            ready=i not in not_ready,
        )
        for i in range(n)
    )
    return NodeView(
        namespace="ns",
        name=name,
        topology=topology,
        statefulset=name,
        replicas=n,
        pods=pods,
        settings=settings or HealSettings(),
        active=tuple(active),
        history=tuple(history),
    )


def assessment(
    nodes: Sequence[NodeView],
    bad: Mapping[str, Verdict],
    availability: Mapping[str, Availability] | None = None,
) -> Assessment:
    verdicts = {p.key: bad.get(p.key.pod, FINE) for nv in nodes for p in nv.pods}
    avail = {nv.key: (availability or {}).get(nv.name, FLOWING) for nv in nodes}
    return Assessment(verdicts=verdicts, nodes=avail, pipeline=FLOWING)


def finished(pod: str, at: float, outcome: str = "Restored") -> dict[str, Any]:
    return {
        "pods": [{"name": pod, "uid": "x"}],
        "outcome": outcome,
        "outcomeReason": "RespawnTimeout" if outcome == "Failed" else "Restored",
        "message": "no ready replacement",
        "finishedAt": iso(at),
        "step": "Done" if outcome == "Restored" else "Failed",
        "stepState": "Done",
    }


def running(pod: str, step: str = "Probing") -> dict[str, Any]:
    return {"pods": [{"name": pod, "uid": "x"}], "step": step, "stepState": "Started", "attempt": 1}


def run(
    nodes: Sequence[NodeView],
    bad: Mapping[str, Verdict],
    availability: Mapping[str, Availability] | None = None,
) -> tuple[list[tuple[Scope, tuple[str, ...]]], dict[str, str]]:
    """(started heals as (scope, pods), blocked pod -> reason)."""
    d = decide(nodes, assessment(nodes, bad, availability), now=NOW)
    starts = [(c.scope, c.names()) for c in d.starts]
    blocked = {",".join(b.candidate.names()): b.result.reason for b in d.blocked}
    return starts, blocked


PAUSED = HealSettings(paused=True)
DISABLED = HealSettings(enabled=False)
NO_COOLDOWN = HealSettings(cooldown_seconds=0)

CASES = [
    pytest.param([node("a", 4)], {"a-1": SLOW}, [(Scope.POD, ("a-1",))], {}, id="one-breach-heals"),
    pytest.param([node("a", 4)], {}, [], {}, id="nothing-breaches"),
    pytest.param(
        [node("a", 4, settings=PAUSED)], {"a-1": SLOW}, [], {"a-1": "HealPaused"}, id="paused"
    ),
    pytest.param(
        [node("a", 4, settings=DISABLED)], {"a-1": SLOW}, [], {"a-1": "HealDisabled"}, id="disabled"
    ),
    pytest.param(
        [node("a", 4, active=[running("a-1")])],
        {"a-1": SLOW},
        [],
        {"a-1": "HealInProgress"},
        id="already-healing",
    ),
    # cooldown per pod
    pytest.param(
        [node("a", 4, history=[finished("a-1", NOW - 100)])],
        {"a-1": SLOW},
        [],
        {"a-1": "CooldownActive"},
        id="cooldown-active",
    ),
    pytest.param(
        [node("a", 4, history=[finished("a-1", NOW - 301)])],
        {"a-1": SLOW},
        [(Scope.POD, ("a-1",))],
        {},
        id="cooldown-over",
    ),
    pytest.param(
        [node("a", 4, history=[finished("a-2", NOW - 10)])],
        {"a-1": SLOW},
        [(Scope.POD, ("a-1",))],
        {},
        id="cooldown-is-per-pod",
    ),
    # exponential backoff after failed heals (cooldown 0 to isolate the rule)
    pytest.param(
        [node("a", 4, settings=NO_COOLDOWN, history=[finished("a-1", NOW - 29, "Failed")])],
        {"a-1": SLOW},
        [],
        {"a-1": "BackoffActive"},
        id="backoff-1-failure-30s",
    ),
    pytest.param(
        [node("a", 4, settings=NO_COOLDOWN, history=[finished("a-1", NOW - 31, "Failed")])],
        {"a-1": SLOW},
        [(Scope.POD, ("a-1",))],
        {},
        id="backoff-1-failure-over",
    ),
    pytest.param(
        [
            node(
                "a",
                4,
                settings=NO_COOLDOWN,
                history=[finished("a-1", NOW - 200, "Failed")] * 2
                + [finished("a-1", NOW - 59, "Failed")],
            )
        ],
        {"a-1": SLOW},
        [],
        {"a-1": "BackoffActive"},
        id="backoff-3-failures-120s",
    ),
    pytest.param(
        [
            node(
                "a",
                4,
                settings=NO_COOLDOWN,
                history=[
                    finished("a-1", NOW - 900, "Failed"),
                    finished("a-1", NOW - 800),
                    finished("a-1", NOW - 10),
                ],
            )
        ],
        {"a-1": SLOW},
        [(Scope.POD, ("a-1",))],
        {},
        id="success-resets-backoff",
    ),
    # budget: maxUnavailablePercent 25
    pytest.param(
        [node("a", 4)],
        {"a-1": SLOW, "a-2": SLOW},
        [(Scope.POD, ("a-1",))],
        {"a-2": "MaxUnavailable"},
        id="budget-4-pods-1-allowed",
    ),
    pytest.param(
        [node("a", 2)],
        {"a-1": SLOW},
        [(Scope.POD, ("a-1",))],
        {},
        id="budget-at-least-1-from-2-pods",
    ),
    pytest.param(
        [node("a", 8)],
        {"a-1": SLOW, "a-2": SLOW, "a-3": SLOW},
        [(Scope.POD, ("a-1",)), (Scope.POD, ("a-2",))],
        {"a-3": "MaxUnavailable"},
        id="budget-8-pods-2-allowed",
    ),
    pytest.param(
        [node("a", 4, not_ready=[0])],
        {"a-1": SLOW},
        [],
        {"a-1": "MaxUnavailable"},
        id="budget-counts-not-ready-pods",
    ),
    pytest.param(
        [node("a", 4, not_ready=[1])],
        {"a-1": SLOW},
        [(Scope.POD, ("a-1",))],
        {},
        id="healing-a-pod-already-out-is-free",
    ),
    pytest.param(
        [node("a", 4, active=[running("a-0")])],
        {"a-1": SLOW},
        [],
        {"a-1": "MaxUnavailable"},
        id="budget-counts-running-heals",
    ),
    # single replica
    pytest.param(
        [node("a", 1)],
        {"a-0": SLOW},
        [],
        {"a-0": "MaxUnavailable"},
        id="single-replica-slow-but-serving-kept",
    ),
    pytest.param(
        [node("a", 1)], {"a-0": HUNG}, [(Scope.POD, ("a-0",))], {}, id="single-replica-hung-healed"
    ),
    pytest.param(
        [node("a", 1, not_ready=[0])],
        {"a-0": SLOW},
        [(Scope.POD, ("a-0",))],
        {},
        id="single-replica-not-ready-healed",
    ),
    # whole node
    pytest.param(
        [node("a", 3)],
        {"a-0": HUNG, "a-1": HUNG, "a-2": SLOW},
        [(Scope.NODE, ("a-0", "a-1", "a-2"))],
        {},
        id="whole-node-respawn",
    ),
    pytest.param(
        [node("a", 3, active=[running("a-0")])],
        {"a-0": HUNG, "a-1": HUNG, "a-2": SLOW},
        [],
        {"a-0,a-1,a-2": "HealInProgress"},
        id="whole-node-waits-for-running-heal",
    ),
    # one node of a topology at a time
    pytest.param(
        [node("a", 4, active=[running("a-0")]), node("b", 4)],
        {"b-1": SLOW},
        [],
        {"b-1": "AnotherNodeHealing"},
        id="topology-one-node-at-a-time",
    ),
    pytest.param(
        [node("a", 4), node("b", 4)],
        {"a-1": SLOW, "b-1": SLOW},
        [(Scope.POD, ("a-1",))],
        {"b-1": "AnotherNodeHealing"},
        id="topology-same-poll",
    ),
    pytest.param(
        [node("a", 4, active=[running("a-0")]), node("b", 4, topology="red")],
        {"b-1": SLOW},
        [(Scope.POD, ("b-1",))],
        {},
        id="other-topology-independent",
    ),
    # correlated failure: most pods of several nodes breach together
    pytest.param(
        [node("a", 3), node("b", 3, topology="red"), node("c", 3, topology="green")],
        {"a-0": SLOW, "a-1": SLOW, "b-0": SLOW, "b-1": SLOW, "c-0": SLOW},
        [(Scope.POD, ("a-0",))],
        {
            "a-1": "CorrelatedFailure",
            "b-0": "CorrelatedFailure",
            "b-1": "CorrelatedFailure",
            "c-0": "CorrelatedFailure",
        },
        id="correlated-one-diagnostic-heal",
    ),
    pytest.param(
        [node("a", 3, active=[running("a-2")]), node("b", 3, topology="red")],
        {"a-0": SLOW, "a-1": SLOW, "b-0": SLOW, "b-1": SLOW},
        [],
        {
            "a-0": "CorrelatedFailure",
            "a-1": "CorrelatedFailure",
            "b-0": "CorrelatedFailure",
            "b-1": "CorrelatedFailure",
        },
        id="correlated-while-one-runs",
    ),
    # pods being healed still count: isolated pods lose their breach evidence (no traffic)
    pytest.param(
        [node("a", 3, active=[running("a-0"), running("a-1")]), node("b", 3, topology="red")],
        {"b-0": SLOW, "b-1": SLOW},
        [],
        {"b-0": "CorrelatedFailure", "b-1": "CorrelatedFailure"},
        id="correlated-counts-pods-under-heal",
    ),
    pytest.param(
        [node("a", 3, settings=PAUSED), node("b", 3, settings=PAUSED)],
        {"a-0": SLOW, "a-1": SLOW, "a-2": SLOW, "b-0": SLOW, "b-1": SLOW, "b-2": SLOW},
        [],
        {f"{n}-{i}": "HealPaused" for n in "ab" for i in range(3)},
        id="every-pod-faulty-paused",
    ),
    pytest.param(
        [node("a", 3), node("b", 3, topology="red")],
        {"a-0": SLOW, "a-1": SLOW, "a-2": SLOW, "b-0": SLOW, "b-1": SLOW, "b-2": SLOW},
        # one diagnostic heal of one pod, never a whole node, while the failure is shared
        [(Scope.POD, ("a-0",))],
        {f"{n}-{i}": "CorrelatedFailure" for n in "ab" for i in range(3) if (n, i) != ("a", 0)},
        id="every-pod-faulty-storm-limited",
    ),
    # metrics
    pytest.param(
        [node("a", 4)],
        {"a-1": SLOW},
        [],
        {"a-1": "MetricsUnavailable"},
        id="metrics-unavailable-blocks",
    ),
]


@pytest.mark.parametrize(("nodes", "bad", "starts", "blocked"), CASES)
def test_storm_rules(
    nodes: list[NodeView],
    bad: dict[str, Verdict],
    starts: list[tuple[Scope, tuple[str, ...]]],
    blocked: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    down = {"a": DOWN} if "metrics-unavailable" in request.node.callspec.id else None
    got_starts, got_blocked = run(nodes, bad, down)
    assert got_starts == starts
    assert got_blocked == blocked


@pytest.mark.parametrize(
    ("total", "percent", "allowed"),
    [
        pytest.param(1, 25, 0, id="1-pod-25"),
        pytest.param(1, 100, 1, id="1-pod-100"),
        pytest.param(2, 25, 1, id="2-pods-min-1"),
        pytest.param(4, 25, 1, id="4-pods-25"),
        pytest.param(4, 50, 2, id="4-pods-50"),
        pytest.param(10, 34, 3, id="10-pods-34-floor"),
        pytest.param(0, 50, 0, id="no-pods"),
    ],
)
def test_allowed_unavailable(total: int, percent: float, allowed: int) -> None:
    assert allowed_unavailable(total, percent) == allowed


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [
        pytest.param(0, 0, id="none"),
        pytest.param(1, 30, id="first"),
        pytest.param(2, 60, id="second"),
        pytest.param(3, 120, id="third"),
        pytest.param(6, 600, id="capped"),
    ],
)
def test_backoff_doubles_and_caps(failures: int, seconds: float) -> None:
    assert backoff_seconds(failures, HealSettings()) == seconds


def conditions(
    nodes: Sequence[NodeView], bad: Mapping[str, Verdict], name: str = "a"
) -> dict[str, ConditionInput]:
    d = decide(nodes, assessment(nodes, bad), now=NOW)
    return {c.type: c for c in d.conditions[("ns", name)]}


def test_conditions_when_healing_and_when_blocked() -> None:
    busy = conditions([node("a", 4, active=[running("a-0", "Probing")])], {"a-1": SLOW})
    assert busy["Healing"].status == "True"
    assert busy["Healing"].reason == "HealInProgress"
    assert "a-0: Probing" in busy["Healing"].message
    assert "allows 1" in busy["Healing"].message  # the waiting pod is mentioned
    calm = conditions([node("a", 4)], {})
    assert (calm["Healing"].status, calm["Healing"].reason) == ("False", "NoHealNeeded")
    assert calm["MetricsAvailable"].status == "True"
    paused = conditions([node("a", 4, settings=PAUSED)], {})
    assert paused["Healing"].reason == "HealPaused"


def test_correlated_failure_condition_says_why() -> None:
    nodes = [node("a", 3, active=[running("a-2")]), node("b", 3, topology="red")]
    cond = conditions(nodes, {"a-0": SLOW, "a-1": SLOW, "b-0": SLOW, "b-1": SLOW}, name="b")
    assert cond["Healing"].reason == "CorrelatedFailure"
    assert "shared" in cond["Healing"].message and "a, b" in cond["Healing"].message


@pytest.mark.parametrize(
    ("failures", "status"),
    [pytest.param(2, "False", id="two-failures"), pytest.param(3, "True", id="three-failures")],
)
def test_degraded_after_repeated_failed_heals(failures: int, status: str) -> None:
    history = [finished("a-1", NOW - 1000 + i, "Failed") for i in range(failures)]
    cond = conditions([node("a", 4, history=history)], {})
    assert cond["Degraded"].status == status
    if status == "True":
        assert cond["Degraded"].reason == "RespawnsFailing"
        assert "a-1 (3 failed)" in cond["Degraded"].message


def c(type_: str, status: str, reason: str) -> ConditionInput:
    return ConditionInput(type_, status, reason, f"{reason} message")


EVENT_CASES = [
    pytest.param(
        [],
        [c("MetricsAvailable", "False", "PrometheusUnreachable")],
        [EventReason.METRICS_UNAVAILABLE],
        id="metrics-lost-first",
    ),
    pytest.param(
        [c("MetricsAvailable", "True", "MetricsFlowing")],
        [c("MetricsAvailable", "False", "QueryFailed")],
        [EventReason.METRICS_UNAVAILABLE],
        id="metrics-lost",
    ),
    pytest.param(
        [c("MetricsAvailable", "False", "QueryFailed")],
        [c("MetricsAvailable", "False", "QueryFailed")],
        [],
        id="metrics-still-lost-no-spam",
    ),
    pytest.param(
        [c("MetricsAvailable", "False", "QueryFailed")],
        [c("MetricsAvailable", "True", "MetricsFlowing")],
        [EventReason.METRICS_AVAILABLE],
        id="metrics-back",
    ),
    pytest.param(
        [], [c("MetricsAvailable", "True", "MetricsFlowing")], [], id="metrics-fine-from-start"
    ),
    pytest.param(
        [c("Healing", "False", "NoHealNeeded")],
        [c("Healing", "False", "CorrelatedFailure")],
        [EventReason.CORRELATED_FAILURE],
        id="correlated",
    ),
    pytest.param(
        [c("Healing", "False", "NoHealNeeded")],
        [c("Healing", "False", "MaxUnavailable")],
        [EventReason.HEAL_BLOCKED],
        id="blocked",
    ),
    pytest.param(
        [c("Healing", "False", "MaxUnavailable")],
        [c("Healing", "False", "MaxUnavailable")],
        [],
        id="blocked-again-no-spam",
    ),
    pytest.param(
        [c("Healing", "False", "NoHealNeeded")],
        [c("Healing", "True", "HealInProgress")],
        [],
        id="healing-starts-plan-emits",
    ),
    pytest.param(
        [c("Degraded", "False", "AsExpected")],
        [c("Degraded", "True", "RespawnsFailing")],
        [EventReason.HEAL_DEGRADED],
        id="degraded",
    ),
]


@pytest.mark.parametrize(("old", "new", "reasons"), EVENT_CASES)
def test_condition_events_fire_on_change_only(
    old: list[ConditionInput], new: list[ConditionInput], reasons: list[EventReason]
) -> None:
    old_dicts = [{"type": x.type, "status": x.status, "reason": x.reason} for x in old]
    assert [e.reason for e in condition_events(old_dicts, new)] == reasons


def test_start_record_carries_trigger_values_and_pods() -> None:
    nodes = [node("a", 4)]
    d = decide(nodes, assessment(nodes, {"a-1": SLOW}), now=NOW)
    rec = start_record(d.starts[0], now=NOW)
    assert rec["pods"] == [{"name": "a-1", "uid": "uid-a-1", "ip": "10.0.0.1"}]
    assert rec["trigger"][0]["value"] == 1200 and rec["trigger"][0]["threshold"] == 800
    assert (rec["step"], rec["stepState"], rec["scope"]) == ("Isolating", "Pending", "Pod")
