"""Pure reading of pod objects: readiness, the in-rotation gate, and who should get a config.

Kept apart from the I/O so the rules deciding when a pod enters rotation and when it needs
the current config pushed are table-tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import api


def condition(pod: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def containers_ready(pod: Mapping[str, Any]) -> bool:
    c = condition(pod, "ContainersReady")
    return c is not None and c.get("status") == "True"


def has_gate(pod: Mapping[str, Any]) -> bool:
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    return any(g.get("conditionType") == api.READINESS_GATE for g in gates)


def gate_status(pod: Mapping[str, Any]) -> str | None:
    """True/False as set by the operator (or the healer), None when never set."""
    c = condition(pod, api.READINESS_GATE)
    return None if c is None else str(c.get("status"))


def is_live(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return not meta.get("deletionTimestamp") and status.get("phase") == "Running"


def pod_ip(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP") or "")


def restarts(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def push_key(pod: Mapping[str, Any]) -> tuple[str, int]:
    """Identity of one running gateway process: a container restart reads the (possibly
    stale) mounted file again, so it needs the current config pushed again."""
    return (str((pod.get("metadata") or {}).get("uid", "")), restarts(pod))


def wants_admission(pod: Mapping[str, Any]) -> bool:
    """A new pod whose containers are ready but which was never put in rotation. A pod whose
    gate is False was taken out by the healer; only the healer puts it back."""
    return (
        is_live(pod)
        and has_gate(pod)
        and containers_ready(pod)
        and gate_status(pod) is None
        and bool(pod_ip(pod))
    )


def wants_push(
    pod: Mapping[str, Any], *, pushed: Mapping[tuple[str, int], str], revision: str
) -> bool:
    """Containers ready and this process has not acknowledged ``revision`` yet."""
    return (
        is_live(pod)
        and containers_ready(pod)
        and bool(pod_ip(pod))
        and pushed.get(push_key(pod)) != revision
    )


def in_rotation_condition(*, now: datetime, message: str) -> dict[str, Any]:
    return {
        "type": api.READINESS_GATE,
        "status": "True",
        "reason": "ContainersReady",
        "message": message,
        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
