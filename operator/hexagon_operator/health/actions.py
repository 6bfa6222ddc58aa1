"""The effects a heal decision asks for, as plain data, and the Event reasons, defined once.

Why: the plan and the policy are pure; the healer (the executor) turns these dataclasses
into Kubernetes and HTTP calls. Every action is idempotent by construction, so replaying one
after an operator restart is harmless: setting a condition or weight to the same value,
probing again, deleting a pod *by uid* (a precondition: the replacement is never deleted),
scaling a StatefulSet to the same replica count with the same epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventReason(StrEnum):
    """CamelCase reasons of the Events the heal loop emits."""

    HEAL_STARTED = "HealStarted"
    POD_ISOLATED = "PodIsolated"
    PROBE_ANSWERED = "ProbeAnswered"
    PROBE_FAILED = "ProbeFailed"
    POD_RESPAWNED = "PodRespawned"
    NODE_RESPAWNED = "NodeRespawned"
    POD_RELAPSED = "PodRelapsed"
    POD_RESTORED = "PodRestored"
    HEAL_FAILED = "HealFailed"
    HEAL_BLOCKED = "HealBlocked"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    METRICS_AVAILABLE = "MetricsAvailable"
    CORRELATED_FAILURE = "CorrelatedFailure"
    HEAL_DEGRADED = "HealDegraded"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class SetInRotation:
    """Set the pod's ``hexagon.dev/in-rotation`` readiness-gate condition."""

    pod: str
    in_rotation: bool


@dataclass(frozen=True)
class SetWeight:
    """Record the pod's routing weight (0..100) in status and in the weights gateways read."""

    pod: str
    weight: int


@dataclass(frozen=True)
class ProbePod:
    """POST /debug/probe?mode=netstack on the admin port; give up after ``deadline_s``."""

    pod: str
    ip: str
    timeout_ms: int
    deadline_s: float


@dataclass(frozen=True)
class DeletePod:
    """Delete the pod with precondition ``uid`` so a fresh replacement is never deleted."""

    pod: str
    uid: str


@dataclass(frozen=True)
class ScaleStatefulSet:
    """Scale the node's StatefulSet and stamp ``hexagon.dev/heal-epoch`` on its template."""

    name: str
    replicas: int
    epoch: str


@dataclass(frozen=True)
class EmitEvent:
    reason: EventReason
    message: str
    type: EventType = EventType.NORMAL


Action = SetInRotation | SetWeight | ProbePod | DeletePod | ScaleStatefulSet
