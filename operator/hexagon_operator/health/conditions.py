"""The healer's conditions on a HexagonNode (MetricsAvailable, Healing, Degraded) and the
Events announcing their changes.

Why separate from the policy: the policy decides; this module phrases the decision for a
person (``kubectl describe hxn``) following the API conventions: CamelCase reason, a message
saying what to do. Events are derived from condition *changes* (old -> new), so a blocked
heal is announced once when it becomes blocked, not at every poll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hexagon_operator.health.actions import EmitEvent, EventReason, EventType
from hexagon_operator.health.records import failures_in_a_row, pod_names
from hexagon_operator.health.verdicts import Assessment

if TYPE_CHECKING:
    from hexagon_operator.health.policy import Blocked, Candidate, NodeView

METRICS_AVAILABLE = "MetricsAvailable"
HEALING = "Healing"
DEGRADED = "Degraded"
RESPAWNS_FAILING = "RespawnsFailing"


@dataclass(frozen=True)
class ConditionInput:
    """type/status/reason/message; status.py adds lastTransitionTime and observedGeneration."""

    type: str
    status: str
    reason: str
    message: str


def node_conditions(
    node: NodeView,
    assessment: Assessment,
    *,
    starts: Sequence[Candidate],
    blocked: Sequence[Blocked],
) -> tuple[ConditionInput, ...]:
    availability = assessment.nodes.get(node.key, assessment.pipeline)
    metrics = ConditionInput(
        METRICS_AVAILABLE, availability.status, str(availability.reason), availability.message
    )
    return (metrics, _healing(node, starts=starts, blocked=blocked), _degraded(node))


def _healing(
    node: NodeView, *, starts: Sequence[Candidate], blocked: Sequence[Blocked]
) -> ConditionInput:
    running = [
        f"{', '.join(pod_names(rec))}: {rec.get('step')} (attempt {rec.get('attempt', 1)})"
        for rec in node.active
    ]
    running += [f"{', '.join(c.names())}: starting" for c in starts if c.node.key == node.key]
    mine = [b for b in blocked if b.candidate.node.key == node.key]
    waiting = [b for b in mine if b.result.reason != "HealInProgress"]
    if running:
        extra = f"; waiting: {waiting[0].result.message}" if waiting else ""
        return ConditionInput(HEALING, "True", "HealInProgress", "; ".join(running) + extra)
    if waiting:
        first = waiting[0]
        pods = ", ".join(first.candidate.names())
        return ConditionInput(
            HEALING,
            "False",
            first.result.reason,
            f"pod {pods} breaches but: {first.result.message}",
        )
    if not node.settings.enabled:
        return ConditionInput(HEALING, "False", "HealDisabled", "selfHeal.enabled is false")
    if node.settings.paused:
        return ConditionInput(
            HEALING, "False", "HealPaused", "selfHeal.paused is true: no new heal starts"
        )
    return ConditionInput(HEALING, "False", "NoHealNeeded", "no pod of this node breaches")


def _degraded(node: NodeView) -> ConditionInput:
    limit = node.settings.degraded_after_failures
    names = sorted({p.key.pod for p in node.pods} | {n for r in node.history for n in pod_names(r)})
    failing = [(n, failures_in_a_row(node.history, n)) for n in names]
    failing = [(n, c) for n, c in failing if c >= limit]
    if not failing:
        return ConditionInput(DEGRADED, "False", "AsExpected", "heals succeed")
    listed = ", ".join(f"{n} ({c} failed)" for n, c in failing)
    last = next((r for r in reversed(node.history) if r.get("outcome") == "Failed"), {})
    return ConditionInput(
        DEGRADED,
        "True",
        RESPAWNS_FAILING,
        f"heals keep failing for {listed}; last: {last.get('outcomeReason')}: "
        f"{last.get('message')}. The operator backs off; check the pods' logs and events.",
    )


def condition_events(
    old: Sequence[Mapping[str, Any]], new: Sequence[ConditionInput]
) -> tuple[EmitEvent, ...]:
    """Events for the healer's conditions that changed status or reason since ``old``."""
    before = {c.get("type"): c for c in old}
    events: list[EmitEvent] = []
    for cond in new:
        prev = before.get(cond.type)
        if (
            prev is not None
            and prev.get("status") == cond.status
            and prev.get("reason") == cond.reason
        ):
            continue
        event = _event_for(cond, first=prev is None)
        if event is not None:
            events.append(event)
    return tuple(events)


_BLOCKED = {
    "HealPaused",
    "HealDisabled",
    "CooldownActive",
    "BackoffActive",
    "AnotherNodeHealing",
    "MaxUnavailable",
    "MetricsUnavailable",
}


def _event_for(cond: ConditionInput, *, first: bool) -> EmitEvent | None:
    warn = EventType.WARNING
    if cond.type == METRICS_AVAILABLE:
        if cond.status != "True":
            return EmitEvent(EventReason.METRICS_UNAVAILABLE, cond.message, warn)
        return None if first else EmitEvent(EventReason.METRICS_AVAILABLE, cond.message)
    if cond.type == HEALING and cond.status == "False":
        if cond.reason == EventReason.CORRELATED_FAILURE:
            return EmitEvent(EventReason.CORRELATED_FAILURE, cond.message, warn)
        if cond.reason in _BLOCKED:
            return EmitEvent(EventReason.HEAL_BLOCKED, f"{cond.reason}: {cond.message}", warn)
        return None
    if cond.type == DEGRADED and cond.status == "True":
        return EmitEvent(EventReason.HEAL_DEGRADED, cond.message, warn)
    return None
