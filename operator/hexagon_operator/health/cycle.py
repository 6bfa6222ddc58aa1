"""One poll of the heal loop, pure: verdicts + every node's state -> what to persist, which
actions to run, which Events to emit; then the executor's results folded back in.

Why: the healer (the I/O side) should only read Kubernetes, write status, run actions and
emit Events. Which heals start, how each running heal advances, which conditions change
and what moves to the history is decided here, in one place, so the whole poll is
unit-tested in virtual time (see tests/unit/health/test_health_loop.py).

Healer, per poll::

    assessment = monitor.update(await source.observe(), pod_uids)
    for plan in plan_cycle(states, assessment, now=clock()):
        write plan.status() (+ plan.conditions via status.py); emit plan.events
        results = [run(w.actions) for w in plan.work]   # probes in parallel
        plan = complete(plan, results, now=clock()); write plan.status()

Writing the status *before* running ``plan.work`` is what records "step started".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hexagon_operator.health.actions import Action, EmitEvent
from hexagon_operator.health.conditions import ConditionInput, condition_events
from hexagon_operator.health.plan import (
    Facts,
    PodFacts,
    ProbeResult,
    advance,
    mark_done,
    mark_error,
)
from hexagon_operator.health.policy import NodeView, decide, start_record
from hexagon_operator.health.records import Record, heal_status, settle
from hexagon_operator.health.verdicts import Assessment, NodeKey


@dataclass(frozen=True)
class NodeState:
    """One HexagonNode as read this poll: the policy's view, pod facts, current conditions."""

    view: NodeView
    pods: Mapping[str, PodFacts]
    conditions: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Work:
    """The actions one heal record asks for now; report back with a :class:`WorkResult`."""

    record_id: str
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class WorkResult:
    record_id: str
    error: str | None = None  # set if any action failed: the step is retried later
    probe: Mapping[str, ProbeResult] | None = None  # for ProbePod actions, by pod name


@dataclass(frozen=True)
class NodePlan:
    key: NodeKey
    active: list[Record]
    history: list[Record]
    work: list[Work] = field(default_factory=list)
    events: list[EmitEvent] = field(default_factory=list)
    conditions: tuple[ConditionInput, ...] = ()
    history_limit: int = 20

    def status(self) -> dict[str, Any]:
        """``status.heal`` and ``status.healHistory`` to write (conditions are separate)."""
        return heal_status(self.active, self.history)


def plan_cycle(
    nodes: Sequence[NodeState],
    assessment: Assessment,
    *,
    now: float,
    correlated_min_nodes: int = 2,
) -> list[NodePlan]:
    decision = decide(
        [n.view for n in nodes], assessment, now=now, correlated_min_nodes=correlated_min_nodes
    )
    plans = []
    for state in nodes:
        view = state.view
        active = [dict(r) for r in view.active]
        active += [start_record(c, now=now) for c in decision.starts if c.node.key == view.key]
        conditions = tuple(decision.conditions.get(view.key, ()))
        events = list(condition_events(state.conditions, conditions))
        facts = Facts(
            now=now,
            pods=state.pods,
            verdicts={
                k.pod: v
                for k, v in assessment.verdicts.items()
                if (k.namespace, k.node) == view.key
            },
        )
        work = []
        advanced = []
        for rec in active:
            t = advance(rec, facts, view.settings)
            advanced.append(t.record)
            events += t.events
            if t.actions:
                work.append(Work(str(t.record["id"]), t.actions))
        live, history = settle(advanced, view.history, limit=view.settings.history_limit)
        plans.append(
            NodePlan(view.key, live, history, work, events, conditions, view.settings.history_limit)
        )
    return plans


def complete(plan: NodePlan, results: Sequence[WorkResult], *, now: float) -> NodePlan:
    """Record the executor's results: each worked-on step Done (or retried after an error)."""
    by_id = {r.record_id: r for r in results}
    active = []
    for rec in plan.active:
        result = by_id.get(str(rec.get("id")))
        if result is None:
            active.append(rec)
        elif result.error is not None:
            active.append(mark_error(rec, now=now, error=result.error))
        else:
            active.append(mark_done(rec, now=now, probe=result.probe))
    live, history = settle(active, plan.history, limit=plan.history_limit)
    return replace(plan, active=live, history=history, work=[], events=[])
