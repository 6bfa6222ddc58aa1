"""The heal state machine: (persisted record, fresh facts) -> (new record, actions, events).

Why it exists: healing takes several seconds and several API calls, and the operator can be
killed between any two of them. Each step is therefore persisted in the HexagonNode status
*before* its actions run (``stepState: Started``) and *after* (``Done``), and this module is
the only place that decides what comes next, from nothing but the record and the facts.

Executor protocol (the healer):

1. ``t = advance(record, facts, settings)``; persist ``t.record`` (this records "step X
   started" when ``t.actions`` is non-empty), then emit ``t.events``;
2. run ``t.actions`` (all idempotent, see ``actions``); then persist
   ``mark_done(t.record, now=..., probe=...)`` - or ``mark_error(...)`` if an action failed;
3. call ``advance`` again at once (same facts, fresh ``now``) until it returns no actions,
   so a finished step's successor starts now rather than one poll interval later.

Replaying ``advance`` on a record whose step is Done re-derives the same transition and no
action of that step again. A step left Started by a crash is re-issued once
``action_retry_seconds`` have passed (at-least-once, made safe by idempotent actions).

Steps::

    Isolating -> Isolated (drain) -> Probing -> ProbeAnswered -> Restoring -> Done
                                             \\-> ProbeFailed -> Respawning [-> ScalingUp]
                                                  -> Respawned -> Restoring -> Done
    any step past its deadline, or out of attempts -> Failed (pods go back into rotation)

A pod that answers its probe is kept out until its metrics are healthy: positive evidence
(a judged P99) or, since an isolated pod gets no traffic to judge, a hold time after which
it is readmitted with a weight ramp - Envoy's ejection model. If it breaches again while
ramping it *relapses*: isolated again and, its probe having proved worthless, respawned.
A failed heal returns its pods to rotation rather than stranding capacity: a dead pod's own
readiness probe keeps it out anyway, the gateways' outlier detection ejects a sick one within
milliseconds, and the next attempt waits for the policy's exponential backoff.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hexagon_operator.health.actions import (
    Action,
    DeletePod,
    EmitEvent,
    ProbePod,
    ScaleStatefulSet,
    SetInRotation,
    SetWeight,
)
from hexagon_operator.health.records import (
    TERMINAL,
    Record,
    Scope,
    Step,
    StepState,
    iso,
)
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.transitions import (
    Facts,
    PodFacts,
    ProbeResult,
    fail,
    fail_event,
    goto,
    next_step,
    replaced,
    time_of,
)

__all__ = ["Facts", "PodFacts", "ProbeResult", "Transition", "advance", "mark_done", "mark_error"]

ACTION_STEPS = frozenset(
    {Step.ISOLATING, Step.PROBING, Step.RESPAWNING, Step.SCALING_UP, Step.RESTORING, Step.FAILED}
)
# Before the respawn, a pod that vanished or changed uid was replaced by someone else.
_PRE_RESPAWN = frozenset(
    {Step.ISOLATING, Step.ISOLATED, Step.PROBING, Step.PROBE_ANSWERED, Step.PROBE_FAILED}
)


@dataclass(frozen=True)
class Transition:
    record: Record
    actions: tuple[Action, ...] = ()
    events: tuple[EmitEvent, ...] = ()


def advance(record: Mapping[str, Any], facts: Facts, settings: HealSettings) -> Transition:
    """Move the record as far as the facts allow; stop at the first step that must act/wait."""
    rec: Record = copy.deepcopy(dict(record))
    events: list[EmitEvent] = []
    for _ in range(16):  # each pass either acts, waits, or enters a new step
        step = Step(rec["step"])
        if step in TERMINAL and rec["stepState"] in (StepState.DONE, StepState.WAITING):
            return Transition(rec, (), tuple(events))
        if step in _PRE_RESPAWN and replaced(rec, facts):
            # Someone else (kubelet, a person) already replaced the pod: wait for it instead.
            goto(rec, Step.RESPAWNING, facts.now, state=StepState.DONE)
            rec["respawnStartedAt"] = iso(facts.now)
            continue
        if step in ACTION_STEPS and rec["stepState"] != StepState.DONE:
            actions = _pending_actions(rec, facts, settings)
            if actions is None:  # issued recently and still running: wait for mark_done
                return Transition(rec, (), tuple(events))
            if actions is _EXHAUSTED:
                if step is Step.FAILED:  # giving the pods back failed too: the record ends
                    rec["stepState"] = str(StepState.DONE)
                    continue
                error = (rec.get("lastError") or {}).get("message", "no confirmation")
                fail(
                    rec,
                    facts.now,
                    "ActionFailed",
                    f"step {step} failed {rec['stepRetries']} times: {error}",
                )
                fail_event(rec, events)
                continue
            if actions:
                return Transition(rec, actions, tuple(events))
            rec["stepState"] = str(StepState.DONE)  # nothing left to do for this step
            continue
        moved = next_step(rec, facts, settings, events)
        if not moved:
            return Transition(rec, (), tuple(events))
    raise RuntimeError(f"heal {rec.get('id')} did not settle; last step {rec['step']}")


def mark_done(
    record: Mapping[str, Any], *, now: float, probe: Mapping[str, ProbeResult] | None = None
) -> Record:
    """The executor ran the current step's actions; a second call is a no-op."""
    rec: Record = copy.deepcopy(dict(record))
    if rec["stepState"] != StepState.STARTED:
        return rec
    rec["stepState"] = str(StepState.DONE)
    rec["stepRetries"] = 0
    rec["lastError"] = None
    rec["steps"][-1]["doneAt"] = iso(now)
    if rec["step"] == Step.PROBING and probe is not None:
        rec["probe"] = {name: result.as_dict() for name, result in probe.items()}
    return rec


def mark_error(record: Mapping[str, Any], *, now: float, error: str) -> Record:
    """An action of the current step failed; it is retried after ``action_retry_seconds``."""
    rec: Record = copy.deepcopy(dict(record))
    if rec["stepState"] != StepState.STARTED:
        return rec
    rec["stepState"] = str(StepState.PENDING)
    rec["stepRetries"] = int(rec.get("stepRetries", 0)) + 1
    rec["lastError"] = {"at": iso(now), "message": error}
    return rec


# ---------------------------------------------------------------- actions of a step


_EXHAUSTED = object()


def _pending_actions(rec: Record, facts: Facts, settings: HealSettings) -> Any:
    """Actions to issue now (marking the step Started); () if none are needed; None while
    they are in flight or backing off after an error; _EXHAUSTED when retries ran out."""
    step = Step(rec["step"])
    now = facts.now
    last = rec["steps"][-1]
    if rec["stepState"] == StepState.STARTED:
        started = time_of(last.get("startedAt"), now)
        patience = settings.action_retry_seconds
        if step is Step.PROBING:
            patience = max(patience, 2 * settings.probe_deadline_seconds)
        if now - started < patience:
            return None
        rec["stepRetries"] = int(rec.get("stepRetries", 0)) + 1  # the executor never confirmed
    elif rec.get("lastError"):
        failed_at = time_of(rec["lastError"]["at"], now)
        if now - failed_at < settings.action_retry_seconds:
            return None
    if rec["stepRetries"] > settings.max_action_retries:
        return _EXHAUSTED
    actions = _actions_for(rec, step, facts, settings)
    if actions:
        rec["stepState"] = str(StepState.STARTED)
        last["startedAt"] = iso(now)
    return actions


def _actions_for(
    rec: Record, step: Step, facts: Facts, settings: HealSettings
) -> tuple[Action, ...]:
    pods = rec["pods"]
    if step is Step.ISOLATING:
        return (
            *(SetInRotation(p["name"], False) for p in pods),
            *(SetWeight(p["name"], 0) for p in pods),
        )
    if step is Step.PROBING:
        return tuple(
            ProbePod(p["name"], p["ip"], settings.probe_timeout_ms, settings.probe_deadline_seconds)
            for p in pods
        )
    if step is Step.RESPAWNING:
        if rec["scope"] == Scope.NODE:
            return (ScaleStatefulSet(rec["statefulSet"], 0, rec["epoch"]),)
        current = facts.pods.get(pods[0]["name"])
        if current is None or current.uid != pods[0]["uid"]:
            return ()  # already gone: nothing to delete
        return (DeletePod(pods[0]["name"], pods[0]["uid"]),)
    if step is Step.SCALING_UP:
        return (ScaleStatefulSet(rec["statefulSet"], rec["replicas"], rec["epoch"]),)
    names = [p["name"] for p in (rec["respawned"] or pods)]
    if step is Step.RESTORING:
        weight = settings.ramp_weights[min(rec["rampIndex"], len(settings.ramp_weights) - 1)]
        rec["weight"] = weight
        rec["steps"][-1]["weight"] = weight
        gate = tuple(SetInRotation(n, True) for n in names) if rec["rampIndex"] == 0 else ()
        return (*gate, *(SetWeight(n, weight) for n in names))
    if step is Step.FAILED:
        present = [n for n in names if n in facts.pods]
        return (
            *(SetInRotation(n, True) for n in present),
            *(SetWeight(n, 100) for n in present),
        )
    return ()
