"""Exit conditions of each heal step: when a Done or Waiting step may move on, and where to.

Why separate from ``plan``: ``plan`` owns the persistence protocol (issue actions, mark them
started/done, retry); this module owns the clinical path (drain, probe verdict, kept out
until healthy, respawn deadlines, weight ramp, relapse). Both are pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hexagon_operator.health.actions import EmitEvent, EventReason, EventType
from hexagon_operator.health.records import (
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


# ---------------------------------------------------------------- transitions


def next_step(rec: Record, facts: Facts, settings: HealSettings, events: list[EmitEvent]) -> bool:
    """Leave the current (Done or Waiting) step if its exit condition holds."""
    step = Step(rec["step"])
    now = facts.now
    entered = time_of(rec["steps"][-1].get("enteredAt"), now)
    done_at = time_of(rec["steps"][-1].get("doneAt"), now)
    who = _who(rec)
    if step is Step.ISOLATING:
        _event(events, EventReason.POD_ISOLATED, f"{who} out of rotation (weight 0): {_why(rec)}")
        goto(rec, Step.ISOLATED, now, state=StepState.WAITING)
        return True
    if step is Step.ISOLATED:
        if now - entered < _drain_seconds(rec, settings):
            return False
        if rec["skipProbe"]:
            start_respawn(rec, now)
        else:
            goto(rec, Step.PROBING, now)
        return True
    if step is Step.PROBING:
        results = rec.get("probe") or {}
        answered = bool(results) and all(results.get(p["name"], {}).get("ok") for p in rec["pods"])
        if answered:
            _event(events, EventReason.PROBE_ANSWERED, f"{who} answered its probe: {_probe(rec)}")
            goto(rec, Step.PROBE_ANSWERED, now, state=StepState.WAITING)
        else:
            _event(
                events,
                EventReason.PROBE_FAILED,
                f"{who}: no valid probe answer within {settings.probe_deadline_seconds:g} s "
                f"({_probe(rec)}); respawning",
                warning=True,
            )
            goto(rec, Step.PROBE_FAILED, now, state=StepState.WAITING)
        return True
    if step is Step.PROBE_ANSWERED:
        verdicts = [facts.verdicts.get(p["name"]) for p in rec["pods"]]
        healthy = all(v is not None and v.kind is Kind.HEALTHY for v in verdicts)
        evidence = all(v is not None and v.p99_judged for v in verdicts)
        if healthy and (evidence or now - entered >= settings.recovery_hold_seconds):
            goto(rec, Step.RESTORING, now)
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
            start_respawn(rec, now)
            return True
        return False
    if step is Step.PROBE_FAILED:
        start_respawn(rec, now)
        return True
    if step is Step.RESPAWNING:
        return _after_respawn(rec, facts, settings, events)
    if step is Step.SCALING_UP:
        return _after_scale_up(rec, facts, settings, events)
    if step is Step.RESPAWNED:
        names = [p["name"] for p in rec["respawned"]]
        verdicts = [facts.verdicts.get(n) for n in names]
        if all(v is not None and v.kind is Kind.HEALTHY for v in verdicts):
            goto(rec, Step.RESTORING, now)
            rec["rampIndex"] = 0
            return True
        sick = [
            f.message
            for v in verdicts
            if v is not None and v.kind is Kind.BREACHING
            for f in v.reasons
        ]
        if sick:
            # The replacement breaches on its own samples (the window forgets the old pod):
            # respawning did not help, so stop here rather than wait out the deadline.
            fail(rec, now, "ReplacementBreaching", f"{who} respawned but breaches: {sick[0]}")
            fail_event(rec, events)
            return True
        if now - entered >= settings.restore_wait_seconds:
            fail(
                rec,
                now,
                "MetricsNeverHealthy",
                f"{who} respawned but its metrics did not "
                f"become healthy within {settings.restore_wait_seconds:g} s",
            )
            fail_event(rec, events)
            return True
        return False
    if step is Step.RESTORING:
        return _ramp(rec, facts, settings, events, done_at=done_at)
    if step is Step.FAILED:
        rec["stepState"] = str(StepState.DONE)
        return False
    return False


def _drain_seconds(rec: Record, settings: HealSettings) -> float:
    """A pod that cannot even answer its scrape has nothing in flight worth waiting for."""
    codes = {t.get("code") for t in rec["trigger"]}
    return 0.0 if codes == {"ScrapeFailing"} and rec["attempt"] == 1 else settings.drain_seconds


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
            fail(
                rec,
                now,
                "Relapsed",
                f"{_who(rec)} breached again while restoring, "
                f"attempt {rec['attempt']} of {settings.max_attempts}",
            )
            fail_event(rec, events)
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
        goto(rec, Step.ISOLATING, now)
        return True
    if rec["rampIndex"] >= len(settings.ramp_weights) - 1:
        rec["outcome"] = str(Outcome.RESTORED)
        rec["outcomeReason"] = "Restored"
        rec["finishedAt"] = iso(now)
        rec["message"] = f"{_who(rec)} back in rotation at weight {rec['weight']}"
        _event(events, EventReason.POD_RESTORED, rec["message"])
        goto(rec, Step.DONE, now, state=StepState.DONE)
        return True
    if now - done_at < settings.ramp_step_seconds:
        return False
    rec["rampIndex"] += 1
    goto(rec, Step.RESTORING, now)
    return True


def _after_respawn(
    rec: Record, facts: Facts, settings: HealSettings, events: list[EmitEvent]
) -> bool:
    now = facts.now
    began = time_of(rec.get("respawnStartedAt"), now)
    if rec["scope"] == Scope.NODE:
        if not facts.pods:
            goto(rec, Step.SCALING_UP, now)
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
            goto(rec, Step.RESPAWNED, now, state=StepState.WAITING)
            return True
    return _respawn_deadline(rec, now, began, settings, events)


def _after_scale_up(
    rec: Record, facts: Facts, settings: HealSettings, events: list[EmitEvent]
) -> bool:
    now = facts.now
    began = time_of(rec.get("respawnStartedAt"), now)
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
        goto(rec, Step.RESPAWNED, now, state=StepState.WAITING)
        return True
    return _respawn_deadline(rec, now, began, settings, events)


def _respawn_deadline(
    rec: Record, now: float, began: float, settings: HealSettings, events: list[EmitEvent]
) -> bool:
    if now - began < settings.respawn_timeout_seconds:
        return False
    fail(
        rec,
        now,
        "RespawnTimeout",
        f"{_who(rec)}: no ready replacement within {settings.respawn_timeout_seconds:g} s",
    )
    fail_event(rec, events)
    return True


# ---------------------------------------------------------------- helpers


def time_of(text: str | None, default: float) -> float:
    """A recorded timestamp, or ``default`` when absent (0.0 is a valid virtual time)."""
    parsed = parse_time(text)
    return default if parsed is None else parsed


def goto(rec: Record, step: Step, now: float, *, state: StepState = StepState.PENDING) -> None:
    rec["step"] = str(step)
    rec["stepState"] = str(state)
    rec["stepRetries"] = 0
    rec["lastError"] = None
    rec["steps"].append({"step": str(step), "enteredAt": iso(now)})


def start_respawn(rec: Record, now: float) -> None:
    rec["epoch"] = _epoch(rec, now)  # new per attempt: old pods must never match it
    rec["respawnStartedAt"] = iso(now)
    goto(rec, Step.RESPAWNING, now)


def _epoch(rec: Record, now: float) -> str:
    """A label value (<= 63 chars, alphanumeric) unique per heal and attempt."""
    return f"e{int(now * 1000)}a{rec['attempt']}"


def fail(rec: Record, now: float, reason: str, message: str) -> None:
    rec["outcome"] = str(Outcome.FAILED)
    rec["outcomeReason"] = reason
    rec["message"] = message
    rec["finishedAt"] = iso(now)
    goto(rec, Step.FAILED, now)


def fail_event(rec: Record, events: list[EmitEvent]) -> None:
    _event(
        events,
        EventReason.HEAL_FAILED,
        f"{rec['message']}; pods go back into rotation and the next heal waits for the backoff",
        warning=True,
    )


def replaced(rec: Record, facts: Facts) -> bool:
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
