"""Pure status computation for a HexagonNode, by the Kubernetes API conventions.

Input is what the reconciler observed (the StatefulSet's status, spoke claims of the other
nodes of the topology, apply and push failures); output is the status the node should have.
Conditions are keyed by type with a CamelCase reason and a message a person can act on;
``lastTransitionTime`` only moves when the status flips. Conditions and fields this module
does not own (the healer's ``MetricsAvailable``/``Healing``, ``weights``, ``heal``,
``healHistory``) are carried over untouched. ``status_patch`` returns ``None`` when nothing
changed, so the operator writes status only on change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .api import Cond, Reason

OWNED_CONDITIONS = (Cond.READY, Cond.PROGRESSING, Cond.DEGRADED, Cond.SPOKE_CONFLICT)
# Degraded has two writers: the reconciler (children, config, spokes) and the healer (respawns
# keep failing). The reconciler's "all is well" must not clear what the healer raised; the
# healer clears its own once heals succeed again.
HEALER_DEGRADED_REASONS = frozenset({Reason.RESPAWNS_FAILING})
OWNED_FIELDS = (
    "observedGeneration",
    "replicas",
    "readyReplicas",
    "updatedReplicas",
    "selector",
    "health",
    "configRevision",
    "conditions",
)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the reconciler saw; all I/O happens before this is built."""

    generation: int
    desired_replicas: int
    selector: str
    config_revision: str = ""
    sts_exists: bool = False
    sts_generation: int = 0
    sts_observed_generation: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    current_revision: str = ""
    update_revision: str = ""
    conflicting_nodes: tuple[str, ...] = ()
    spoke: str = ""
    topology: str = ""
    apply_error: str = ""
    rejected_pods: tuple[str, ...] = ()  # pods that refused the pushed config (400)
    reject_message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One owned condition before timestamps are attached."""

    type: str
    status: str
    reason: str
    message: str


def _fmt_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollout_done(o: Observed) -> bool:
    return (
        o.sts_exists
        and o.sts_observed_generation >= o.sts_generation
        and o.updated_replicas >= o.desired_replicas
        and o.replicas == o.desired_replicas
        and (not o.update_revision or o.update_revision == o.current_revision)
    )


def verdicts(o: Observed, *, name: str) -> list[Verdict]:
    """The four owned conditions, evaluated in order from the observation."""
    ready_line = f"{o.ready_replicas}/{o.desired_replicas} pods Ready"
    pods_hint = f"kubectl get pods -l app.kubernetes.io/instance={name}"
    out: list[Verdict] = []

    if o.conflicting_nodes:
        others = ", ".join(sorted(o.conflicting_nodes))
        out.append(
            Verdict(
                Cond.SPOKE_CONFLICT,
                "True",
                Reason.SPOKE_CONFLICT,
                f"spoke {o.spoke} of topology {o.topology} is also claimed by {others}; "
                "a hexagon has one node per spoke: delete one or move it to a free spoke",
            )
        )
    else:
        out.append(
            Verdict(
                Cond.SPOKE_CONFLICT,
                "False",
                Reason.SPOKE_UNIQUE,
                f"no other node of topology {o.topology} claims spoke {o.spoke}",
            )
        )

    if o.apply_error:
        deg = Verdict(Cond.DEGRADED, "True", Reason.APPLY_FAILED, o.apply_error)
    elif o.conflicting_nodes:
        deg = Verdict(Cond.DEGRADED, "True", Reason.SPOKE_CONFLICT, out[0].message)
    elif o.rejected_pods:
        pods = ", ".join(sorted(o.rejected_pods))
        deg = Verdict(
            Cond.DEGRADED,
            "True",
            Reason.CONFIG_REJECTED,
            f"pods {pods} rejected the new gateway config and keep serving the previous one: "
            f"{o.reject_message}; fix spec.gateway",
        )
    else:
        deg = Verdict(Cond.DEGRADED, "False", Reason.AS_EXPECTED, "children applied, no conflict")
    out.append(deg)

    done = rollout_done(o)
    if not o.sts_exists:
        prog = Verdict(Cond.PROGRESSING, "True", Reason.ROLLING_OUT, "creating the StatefulSet")
    elif not done:
        prog = Verdict(
            Cond.PROGRESSING,
            "True",
            Reason.ROLLING_OUT,
            f"rolling out: {o.updated_replicas}/{o.desired_replicas} pods updated, "
            f"{o.replicas} exist; watch with kubectl rollout status statefulset/{name}",
        )
    else:
        prog = Verdict(
            Cond.PROGRESSING,
            "False",
            Reason.ROLLOUT_COMPLETE,
            f"all {o.desired_replicas} pods run the current template",
        )
    out.append(prog)

    if o.desired_replicas == 0:
        ready = Verdict(
            Cond.READY,
            "False",
            Reason.SCALED_TO_ZERO,
            f"spec.replicas is 0; scale up with kubectl scale hxn/{name} --replicas=N",
        )
    elif o.ready_replicas >= o.desired_replicas and done:
        ready = Verdict(Cond.READY, "True", Reason.ALL_REPLICAS_READY, ready_line)
    else:
        ready = Verdict(
            Cond.READY,
            "False",
            Reason.REPLICAS_NOT_READY,
            f"{ready_line}; a pod is Ready once its containers are ready and the operator "
            f"puts it in rotation: {pods_hint}",
        )
    out.append(ready)
    return out


def merge_conditions(
    existing: Iterable[Mapping[str, Any]],
    new: Sequence[Verdict],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Existing conditions with the new verdicts applied, in a stable order (owned first)."""
    by_type = {str(c.get("type")): dict(c) for c in existing}
    for v in new:
        old = by_type.get(v.type)
        if (
            v.type == Cond.DEGRADED
            and v.status == "False"
            and old is not None
            and old.get("status") == "True"
            and old.get("reason") in HEALER_DEGRADED_REASONS
        ):
            continue
        flipped = old is None or old.get("status") != v.status
        by_type[v.type] = {
            "type": v.type,
            "status": v.status,
            "reason": v.reason,
            "message": v.message,
            "lastTransitionTime": _fmt_time(now)
            if flipped or old is None or not old.get("lastTransitionTime")
            else old["lastTransitionTime"],
            "observedGeneration": generation,
        }
    owned = [by_type.pop(t) for t in OWNED_CONDITIONS if t in by_type]
    return owned + [by_type[t] for t in sorted(by_type)]


def health(conditions: Sequence[Mapping[str, Any]]) -> str:
    """One word for the printer column, worst first."""
    status = {str(c.get("type")): str(c.get("status")) for c in conditions}
    if status.get(Cond.DEGRADED) == "True" or status.get(Cond.SPOKE_CONFLICT) == "True":
        return "Degraded"
    if status.get(Cond.HEALING) == "True":
        return "Healing"
    if status.get(Cond.READY) == "True":
        return "Healthy"
    if status.get(Cond.PROGRESSING) == "True":
        return "Progressing"
    return "Unknown"


def desired_status(
    current: Mapping[str, Any], o: Observed, *, name: str, now: datetime
) -> dict[str, Any]:
    """The full status the node should have (fields this module owns, others carried over)."""
    conditions = merge_conditions(
        current.get("conditions") or [],
        verdicts(o, name=name),
        generation=o.generation,
        now=now,
    )
    status = {k: v for k, v in current.items() if k not in OWNED_FIELDS}
    status.update(
        {
            "observedGeneration": o.generation,
            "replicas": o.replicas,
            "readyReplicas": o.ready_replicas,
            "updatedReplicas": o.updated_replicas,
            "selector": o.selector,
            "health": health(conditions),
            "configRevision": o.config_revision or str(current.get("configRevision", "")),
            "conditions": conditions,
        }
    )
    return status


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """Merge patch of the owned fields that differ, or None when status is already right."""
    patch = {k: desired[k] for k in OWNED_FIELDS if k in desired and current.get(k) != desired[k]}
    return patch or None


def spoke_conflicts(*, name: str, spoke: str, claims: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Other nodes (by name) of the same topology claiming ``spoke``; ``claims`` holds
    (name, spoke) for every node of the topology, this one included."""
    return tuple(sorted(n for n, s in claims if s == spoke and n != name))
