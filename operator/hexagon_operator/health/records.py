"""The heal record: a JSON-able dict persisted in ``HexagonNode.status``, and queries on it.

Why a dict and not a class: the record *is* the persisted state (``status.heal`` holds the
running heals, ``status.healHistory`` the last ``history_limit`` finished ones), and the
state machine must resume from exactly what the apiserver returns after a restart. Keeping
it a plain dict with camelCase keys means no translation layer can lose a field.

In status: ``status.heal = {"active": [record, ...]}`` (several pods of a node may heal at
once within the budget) and ``status.healHistory = [record, ...]``.

Record shape::

    id, namespace, node, scope ("Pod" | "Node"), statefulSet, replicas,
    pods: [{name, uid, ip}],            # the pods being healed (their uids at start)
    trigger: [{code, signal, value, threshold, message}],
    attempt, skipProbe, epoch,
    step, stepState ("Pending" | "Started" | "Done" | "Waiting"), stepRetries, lastError,
    steps: [{step, enteredAt, startedAt, doneAt, weight?}],   # one entry per step entered
    probe: {pod: {ok, answer | error}},
    respawned: [{name, uid, ip}],
    weight, rampIndex, startedAt, finishedAt, outcome ("Restored" | "Failed"), outcomeReason,
    message

Timestamps are RFC 3339 UTC strings with microseconds, as Kubernetes writes them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

Record = dict[str, Any]


class Step(StrEnum):
    ISOLATING = "Isolating"
    ISOLATED = "Isolated"
    PROBING = "Probing"
    PROBE_ANSWERED = "ProbeAnswered"
    PROBE_FAILED = "ProbeFailed"
    RESPAWNING = "Respawning"
    SCALING_UP = "ScalingUp"
    RESPAWNED = "Respawned"
    RESTORING = "Restoring"
    DONE = "Done"
    FAILED = "Failed"


class StepState(StrEnum):
    PENDING = "Pending"  # the step's actions have not been issued
    STARTED = "Started"  # recorded before the executor acts
    DONE = "Done"  # recorded after the executor acted
    WAITING = "Waiting"  # a step without actions: waiting for facts or time


class Outcome(StrEnum):
    RESTORED = "Restored"
    FAILED = "Failed"


class Scope(StrEnum):
    POD = "Pod"
    NODE = "Node"


TERMINAL = frozenset({Step.DONE, Step.FAILED})


def iso(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def new_record(
    *,
    namespace: str,
    node: str,
    scope: Scope,
    pods: Sequence[Mapping[str, str]],
    trigger: Sequence[Mapping[str, Any]],
    statefulset: str,
    replicas: int,
    now: float,
) -> Record:
    """A heal about to isolate ``pods``; the id is unique per node and start time."""
    stamp = iso(now)
    return {
        "id": f"{node}-{stamp}",
        "namespace": namespace,
        "node": node,
        "scope": str(scope),
        "statefulSet": statefulset,
        "replicas": replicas,
        "pods": [{"name": p["name"], "uid": p["uid"], "ip": p.get("ip", "")} for p in pods],
        "trigger": [dict(t) for t in trigger],
        "attempt": 1,
        "skipProbe": False,
        "epoch": None,
        "step": str(Step.ISOLATING),
        "stepState": str(StepState.PENDING),
        "stepRetries": 0,
        "lastError": None,
        "steps": [{"step": str(Step.ISOLATING), "enteredAt": stamp}],
        "probe": {},
        "respawned": [],
        "weight": None,
        "rampIndex": 0,
        "startedAt": stamp,
        "finishedAt": None,
        "outcome": None,
        "outcomeReason": None,
        "message": "",
    }


def read_active(status: Mapping[str, Any] | None) -> list[Record]:
    """The running heals from a HexagonNode status (``status.heal.active``)."""
    heal = (status or {}).get("heal") or {}
    active = heal.get("active") if isinstance(heal, Mapping) else None
    return [copy.deepcopy(dict(r)) for r in active or []]


def read_history(status: Mapping[str, Any] | None) -> list[Record]:
    return [copy.deepcopy(dict(r)) for r in (status or {}).get("healHistory") or []]


def heal_status(
    active: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The status fragment to write: ``heal`` is an object (the CRD's schema) holding the
    running heals, ``healHistory`` the finished ones, newest last."""
    return {
        "heal": {"active": [dict(r) for r in active]},
        "healHistory": [dict(h) for h in history],
    }


def is_terminal(record: Mapping[str, Any]) -> bool:
    return record.get("step") in TERMINAL and record.get("stepState") in (
        StepState.DONE,
        StepState.WAITING,
    )


def pod_names(record: Mapping[str, Any]) -> list[str]:
    return [p["name"] for p in record.get("pods", [])]


def settle(
    active: Iterable[Mapping[str, Any]],
    history: Iterable[Mapping[str, Any]],
    *,
    limit: int,
) -> tuple[list[Record], list[Record]]:
    """Move finished records from ``status.heal`` to ``status.healHistory`` (newest last)."""
    still: list[Record] = []
    done: list[Record] = [copy.deepcopy(dict(h)) for h in history]
    for rec in active:
        (done if is_terminal(rec) else still).append(copy.deepcopy(dict(rec)))
    return still, done[-limit:] if limit > 0 else []


def records_for_pod(history: Iterable[Mapping[str, Any]], pod: str) -> list[Mapping[str, Any]]:
    return [r for r in history if pod in pod_names(r)]


def failures_in_a_row(history: Iterable[Mapping[str, Any]], pod: str) -> int:
    """Failed heals of ``pod`` since its last successful one (history is oldest first)."""
    count = 0
    for rec in reversed(records_for_pod(history, pod)):
        if rec.get("outcome") != Outcome.FAILED:
            break
        count += 1
    return count


def last_finished_at(history: Iterable[Mapping[str, Any]], pod: str) -> float | None:
    times = [parse_time(r.get("finishedAt")) for r in records_for_pod(history, pod)]
    known = [t for t in times if t is not None]
    return max(known) if known else None
