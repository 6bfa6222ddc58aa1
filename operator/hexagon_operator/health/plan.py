"""The heal state machine: (persisted record, fresh facts) -> (new record, actions, events).

Why it exists: healing takes several seconds and several API calls, and the operator can be
killed between any two of them. Each step is therefore persisted in the HexagonNode status
*before* its actions run (``stepState: Started``) and *after* (``Done``), and this module is
the only place that decides what comes next, from nothing but the record and the facts.

Executor protocol (the healer):

1. ``t = advance(record, facts, settings)``; persist ``t.record`` (this records "step X
   started" when ``t.actions`` is non-empty), then emit ``t.events``;
2. run ``t.actions`` (all idempotent, see ``actions``); then persist
   ``mark_done(t.record, now=..., probe=...)`` - or ``mark_error(...)`` if an action failed.

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
from dataclasses import dataclass, field
from typing import Any

from hexagon_operator.health.actions import (
    Action,
    DeletePod,
    EmitEvent,
    EventReason,
    EventType,
    ProbePod,
    ScaleStatefulSet,
    SetInRotation,
    SetWeight,
)
from hexagon_operator.health.records import (
    TERMINAL,
    Outcome,
    Record,
    Scope,
    Step,
    StepState,
    iso,
    parse_time,
)
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.verdicts import Kind, Verdict

ACTION_STEPS = frozenset(
    {Step.ISOLATING, Step.PROBING, Step.RESPAWNING, Step.SCALING_UP, Step.RESTORING, Step.FAILED}
)
# Before the respawn, a pod that vanished or changed uid was replaced by someone else.
_PRE_RESPAWN = frozenset(
    {Step.ISOLATING, Step.ISOLATED, Step.PROBING, Step.PROBE_ANSWERED, Step.PROBE_FAILED}
)


@dataclass(frozen=True)
class PodFacts:
    """What Kubernetes says about a pod right now."""

    name: str
    uid: str
    ip: str = ""
    containers_ready: bool = False
    epoch: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    answer: Mapping[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "answer": dict(self.answer or {})}
        return {"ok": False, "error": self.error or "no valid answer"}


@dataclass(frozen=True)
class Facts:
    now: float
    pods: Mapping[str, PodFacts] = field(default_factory=dict)  # the node's pods by name
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)  # by pod name


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
        if step in _PRE_RESPAWN and _replaced(rec, facts):
            # Someone else (kubelet, a person) already replaced the pod: wait for it instead.
            _goto(rec, Step.RESPAWNING, facts.now, state=StepState.DONE)
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
                _fail(
                    rec,
                    facts.now,
                    "ActionFailed",
                    f"step {step} failed {rec['stepRetries']} times: {error}",
                )
                _fail_event(rec, events)
                continue
            if actions:
                return Transition(rec, actions, tuple(events))
            rec["stepState"] = str(StepState.DONE)  # nothing left to do for this step
            continue
        moved = _next(rec, facts, settings, events)
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
        started = _time(last.get("startedAt"), now)
        patience = settings.action_retry_seconds
        if step is Step.PROBING:
            patience = max(patience, 2 * settings.probe_deadline_seconds)
        if now - started < patience:
            return None
        rec["stepRetries"] = int(rec.get("stepRetries", 0)) + 1  # the executor never confirmed
    elif rec.get("lastError"):
        failed_at = _time(rec["lastError"]["at"], now)
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


# ---------------------------------------------------------------- transitions


def _next(rec: Record, facts: Facts, settings: HealSettings, events: list[EmitEvent]) -> bool:
    """Leave the current (Done or Waiting) step if its exit condition holds."""
    step = Step(rec["step"])
    now = facts.now
    entered = _time(rec["steps"][-1].get("enteredAt"), now)
    done_at = _time(rec["steps"][-1].get("doneAt"), now)
    who = _who(rec)
    if step is Step.ISOLATING:
        _event(events, EventReason.POD_ISOLATED, f"{who} out of rotation (weight 0): {_why(rec)}")
        _goto(rec, Step.ISOLATED, now, state=StepState.WAITING)
        return True
    if step is Step.ISOLATED:
        if now - entered < settings.drain_seconds:
            return False
        if rec["skipProbe"]:
            _start_respawn(rec, now)
        else:
            _goto(rec, Step.PROBING, now)
        return True
    if step is Step.PROBING:
        results = rec.get("probe") or {}
        answered = bool(results) and all(results.get(p["name"], {}).get("ok") for p in rec["pods"])
        if answered:
            _event(events, EventReason.PROBE_ANSWERED, f"{who} answered its probe: {_probe(rec)}")
            _goto(rec, Step.PROBE_ANSWERED, now, state=StepState.WAITING)
        else:
            _event(
                events,
                EventReason.PROBE_FAILED,
                f"{who}: no valid probe answer within {settings.probe_deadline_seconds:g} s "
                f"({_probe(rec)}); respawning",
                warning=True,
            )
            _goto(rec, Step.PROBE_FAILED, now, state=StepState.WAITING)
        return True
    if step is Step.PROBE_ANSWERED:
        verdicts = [facts.verdicts.get(p["name"]) for p in rec["pods"]]
        healthy = all(v is not None and v.kind is Kind.HEALTHY for v in verdicts)
        evidence = all(v is not None and v.p99_judged for v in verdicts)
        if healthy and (evidence or now - entered >= settings.recovery_hold_seconds):
            _goto(rec, Step.RESTORING, now)
            rec["rampIndex"] = 0
            return True
        if now - entered >= settings.recovery_timeout_seconds:
            _event(
                events,
                EventReason.PROBE_ANSWERED,
                f"{who} answered but its metrics did not recover within "
                f"{settings.recovery_timeout_seconds:g} s; respawning",
                warning=True,
            )
            _start_respawn(rec, now)
            return True
        return False
    if step is Step.PROBE_FAILED:
        _start_respawn(rec, now)
        return True
    if step is Step.RESPAWNING:
        return _after_respawn(rec, facts, settings, events)
    if step is Step.SCALING_UP:
        return _after_scale_up(rec, facts, settings, events)
    if step is Step.RESPAWNED:
        names = [p["name"] for p in rec["respawned"]]
        verdicts = [facts.verdicts.get(n) for n in names]
        if all(v is not None and v.kind is Kind.HEALTHY for v in verdicts):
            _goto(rec, Step.RESTORING, now)
            rec["rampIndex"] = 0
            return True
        if now - entered >= settings.restore_wait_seconds:
            _fail(
                rec,
                now,
                "MetricsNeverHealthy",
                f"{who} respawned but its metrics did not "
                f"become healthy within {settings.restore_wait_seconds:g} s",
            )
            _fail_event(rec, events)
            return True
        return False
    if step is Step.RESTORING:
        return _ramp(rec, facts, settings, events, done_at=done_at)
    if step is Step.FAILED:
        rec["stepState"] = str(StepState.DONE)
        return False
    return False


def _ramp(
    rec: Record,
    facts: Facts,
    settings: HealSettings,
    events: list[EmitEvent],
    *,
    done_at: float,
) -> bool:
    now = facts.now
    names = [p["name"] for p in (rec["respawned"] or rec["pods"])]
    if any((v := facts.verdicts.get(n)) is not None and v.kind is Kind.BREACHING for n in names):
        if rec["attempt"] >= settings.max_attempts:
            _fail(
                rec,
                now,
                "Relapsed",
                f"{_who(rec)} breached again while restoring, "
                f"attempt {rec['attempt']} of {settings.max_attempts}",
            )
            _fail_event(rec, events)
            return True
        rec["attempt"] += 1
        # Its probe answer (or its respawn) did not fix it: next time go straight to respawn.
        rec["skipProbe"] = True
        rec["respawned"] = []
        rec["pods"] = [
            {"name": n, "uid": facts.pods[n].uid if n in facts.pods else "", "ip": _ip(facts, n)}
            for n in names
        ]
        _event(
            events,
            EventReason.POD_RELAPSED,
            f"{_who(rec)} breached again while restoring "
            f"at weight {rec['weight']}; isolating it again (attempt {rec['attempt']})",
            warning=True,
        )
        _goto(rec, Step.ISOLATING, now)
        return True
    if rec["rampIndex"] >= len(settings.ramp_weights) - 1:
        rec["outcome"] = str(Outcome.RESTORED)
        rec["outcomeReason"] = "Restored"
        rec["finishedAt"] = iso(now)
        rec["message"] = f"{_who(rec)} back in rotation at weight {rec['weight']}"
        _event(events, EventReason.POD_RESTORED, rec["message"])
        _goto(rec, Step.DONE, now, state=StepState.DONE)
        return True
    if now - done_at < settings.ramp_step_seconds:
        return False
    rec["rampIndex"] += 1
    _goto(rec, Step.RESTORING, now)
    return True


def _after_respawn(
    rec: Record, facts: Facts, settings: HealSettings, events: list[EmitEvent]
) -> bool:
    now = facts.now
    began = _time(rec.get("respawnStartedAt"), now)
    if rec["scope"] == Scope.NODE:
        if not facts.pods:
            _goto(rec, Step.SCALING_UP, now)
            return True
    else:
        old = rec["pods"][0]
        new = facts.pods.get(old["name"])
        if new is not None and new.uid != old["uid"] and new.containers_ready:
            rec["respawned"] = [{"name": new.name, "uid": new.uid, "ip": new.ip}]
            _event(
                events,
                EventReason.POD_RESPAWNED,
                f"pod {new.name} respawned: uid {old['uid']} -> {new.uid}",
            )
            _goto(rec, Step.RESPAWNED, now, state=StepState.WAITING)
            return True
    return _respawn_deadline(rec, now, began, settings, events)


def _after_scale_up(
    rec: Record, facts: Facts, settings: HealSettings, events: list[EmitEvent]
) -> bool:
    now = facts.now
    began = _time(rec.get("respawnStartedAt"), now)
    fresh = [p for p in facts.pods.values() if p.epoch == rec["epoch"] and p.containers_ready]
    if len(fresh) >= rec["replicas"]:
        rec["respawned"] = [
            {"name": p.name, "uid": p.uid, "ip": p.ip} for p in sorted(fresh, key=lambda p: p.name)
        ]
        _event(
            events,
            EventReason.NODE_RESPAWNED,
            f"node {rec['node']} respawned with heal-epoch {rec['epoch']}: "
            f"{len(fresh)} pod(s) ready",
        )
        _goto(rec, Step.RESPAWNED, now, state=StepState.WAITING)
        return True
    return _respawn_deadline(rec, now, began, settings, events)


def _respawn_deadline(
    rec: Record, now: float, began: float, settings: HealSettings, events: list[EmitEvent]
) -> bool:
    if now - began < settings.respawn_timeout_seconds:
        return False
    _fail(
        rec,
        now,
        "RespawnTimeout",
        f"{_who(rec)}: no ready replacement within {settings.respawn_timeout_seconds:g} s",
    )
    _fail_event(rec, events)
    return True


# ---------------------------------------------------------------- helpers


def _time(text: str | None, default: float) -> float:
    """A recorded timestamp, or ``default`` when absent (0.0 is a valid virtual time)."""
    parsed = parse_time(text)
    return default if parsed is None else parsed


def _goto(rec: Record, step: Step, now: float, *, state: StepState = StepState.PENDING) -> None:
    rec["step"] = str(step)
    rec["stepState"] = str(state)
    rec["stepRetries"] = 0
    rec["lastError"] = None
    rec["steps"].append({"step": str(step), "enteredAt": iso(now)})


def _start_respawn(rec: Record, now: float) -> None:
    rec["epoch"] = _epoch(rec, now)  # new per attempt: old pods must never match it
    rec["respawnStartedAt"] = iso(now)
    _goto(rec, Step.RESPAWNING, now)


def _epoch(rec: Record, now: float) -> str:
    """A label value (<= 63 chars, alphanumeric) unique per heal and attempt."""
    return f"e{int(now * 1000)}a{rec['attempt']}"


def _fail(rec: Record, now: float, reason: str, message: str) -> None:
    rec["outcome"] = str(Outcome.FAILED)
    rec["outcomeReason"] = reason
    rec["message"] = message
    rec["finishedAt"] = iso(now)
    _goto(rec, Step.FAILED, now)


def _fail_event(rec: Record, events: list[EmitEvent]) -> None:
    _event(
        events,
        EventReason.HEAL_FAILED,
        f"{rec['message']}; pods go back into rotation and the next heal waits for the backoff",
        warning=True,
    )


def _replaced(rec: Record, facts: Facts) -> bool:
    if rec["scope"] == Scope.NODE or not rec["pods"]:
        return False
    old = rec["pods"][0]
    current = facts.pods.get(old["name"])
    return current is None or current.uid != old["uid"]


def _ip(facts: Facts, name: str) -> str:
    pod = facts.pods.get(name)
    return pod.ip if pod is not None else ""


def _who(rec: Record) -> str:
    if rec["scope"] == Scope.NODE:
        return f"node {rec['node']} ({len(rec['pods'])} pods)"
    return f"pod {rec['pods'][0]['name']}"


def _why(rec: Record) -> str:
    return "; ".join(str(t.get("message", t.get("code", "?"))) for t in rec["trigger"]) or "?"


def _probe(rec: Record) -> str:
    parts = []
    for name, result in sorted((rec.get("probe") or {}).items()):
        detail = result.get("answer") if result.get("ok") else result.get("error")
        parts.append(f"{name}: {detail}")
    return "; ".join(parts) or "no result recorded"


def _event(
    events: list[EmitEvent], reason: EventReason, message: str, *, warning: bool = False
) -> None:
    kind = EventType.WARNING if warning else EventType.NORMAL
    events.append(EmitEvent(reason, message, kind))
