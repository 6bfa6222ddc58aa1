"""Storm protection: which heals may start now, as a chain of pure checks.

Why it exists: a self-healer that heals everything that looks sick will, on the day an
upstream or the network fails, respawn the whole fleet and turn a partial outage into a full
one. Each rule below is one function ``CheckInput -> CheckResult(reason, message, blocked)``
(the shape of cert-manager's readiness policies), evaluated in order; the first blocking
result wins and is what the ``Healing`` condition and the ``HealBlocked`` Event say.

Rules, in order:

1. ``HealDisabled`` / ``HealPaused``: ``selfHeal.enabled`` false or ``paused`` true stops new
   heals; running heals are not candidates here, so they finish.
2. ``MetricsUnavailable``: never heal on metrics we could not read.
3. ``HealInProgress``: one heal per pod at a time.
4. ``CooldownActive``: at least ``cooldownSeconds`` between two heals of the same pod.
5. ``BackoffActive``: after N failed heals in a row, wait ``base * 2^(N-1)`` (capped).
6. ``CorrelatedFailure``: when most pods of several nodes breach together the cause is
   usually shared; respawning gateways will not fix it. Then at most one heal runs in the
   whole fleet at a time, for every node, and of a single pod, never a whole node (a
   diagnostic one: its probe tells whether the gateway itself is sick); pods under heal
   still count as breaching, since isolated pods lose their evidence. The condition says
   why the others wait.
7. ``AnotherNodeHealing``: never more than one node of a topology healing at once.
8. ``MaxUnavailable``: never more than ``maxUnavailablePercent`` of a node's pods out of
   rotation (not Ready, isolated, or being healed), rounded down but at least 1 when the
   node has 2 or more pods. A pod already out of rotation costs nothing to heal.
   *Single replica*: isolating the only pod takes the node offline, so it is allowed only
   when the pod is not serving anyway (its scrape fails, or it is not Ready); a slow but
   serving single pod is left in place (slow beats nothing) and the condition says so.
   *Whole node* (every pod of a node with 2+ pods breaching): the node is respawned as one
   (StatefulSet to 0 and back, DESIGN.md step 5.3), which exceeds the budget by design:
   none of its pods serves well. Rules 6 and 7 still apply, so it never happens to several
   nodes at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hexagon_operator.health.actions import EventReason
from hexagon_operator.health.conditions import ConditionInput, node_conditions
from hexagon_operator.health.records import (
    Record,
    Scope,
    failures_in_a_row,
    last_finished_at,
    new_record,
    pod_names,
)
from hexagon_operator.health.samples import PodKey
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.verdicts import Assessment, Code, Finding, Kind, NodeKey


@dataclass(frozen=True)
class PodView:
    """A pod as Kubernetes reports it; ``in_rotation`` is its readiness-gate condition."""

    key: PodKey
    uid: str
    ip: str = ""
    ready: bool = True
    in_rotation: bool = True


@dataclass(frozen=True)
class NodeView:
    """One HexagonNode: its pods, its running heals (status.heal) and its history."""

    namespace: str
    name: str
    topology: str
    statefulset: str
    replicas: int
    pods: tuple[PodView, ...]
    settings: HealSettings = field(default_factory=HealSettings)
    active: tuple[Mapping[str, Any], ...] = ()
    history: tuple[Mapping[str, Any], ...] = ()

    @property
    def key(self) -> NodeKey:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Candidate:
    node: NodeView
    scope: Scope
    pods: tuple[PodView, ...]
    findings: tuple[Finding, ...]

    def names(self) -> tuple[str, ...]:
        return tuple(p.key.pod for p in self.pods)


@dataclass(frozen=True)
class CheckInput:
    candidate: Candidate
    nodes: Sequence[NodeView]
    assessment: Assessment
    now: float
    planned: tuple[Candidate, ...]  # heals this pass already decided to start
    correlated: tuple[NodeKey, ...]  # nodes with most pods breaching, when several do


@dataclass(frozen=True)
class CheckResult:
    reason: str = ""
    message: str = ""
    blocked: bool = False


PASS = CheckResult()
Check = Callable[[CheckInput], CheckResult]


@dataclass(frozen=True)
class Blocked:
    candidate: Candidate
    result: CheckResult


@dataclass(frozen=True)
class Decision:
    starts: tuple[Candidate, ...]
    blocked: tuple[Blocked, ...]
    conditions: Mapping[NodeKey, tuple[ConditionInput, ...]]


# ---------------------------------------------------------------- the checks


def check_enabled(i: CheckInput) -> CheckResult:
    s = i.candidate.node.settings
    if not s.enabled:
        return CheckResult("HealDisabled", "selfHeal.enabled is false: no heal starts", True)
    if s.paused:
        return CheckResult(
            "HealPaused",
            "selfHeal.paused is true: no new heal starts; running heals finish. Set it to "
            "false to resume.",
            True,
        )
    return PASS


def check_metrics(i: CheckInput) -> CheckResult:
    availability = i.assessment.nodes.get(i.candidate.node.key, i.assessment.pipeline)
    if availability.available:
        return PASS
    return CheckResult("MetricsUnavailable", availability.message, True)


def check_in_progress(i: CheckInput) -> CheckResult:
    busy = {n for rec in i.candidate.node.active for n in pod_names(rec)}
    if i.candidate.node.active and i.candidate.scope is Scope.NODE:
        return CheckResult("HealInProgress", "a heal of this node's pods is running", True)
    overlap = sorted(busy & set(i.candidate.names()))
    if overlap:
        return CheckResult("HealInProgress", f"pod {', '.join(overlap)} is being healed", True)
    return PASS


def check_cooldown(i: CheckInput) -> CheckResult:
    s = i.candidate.node.settings
    for name in i.candidate.names():
        last = last_finished_at(i.candidate.node.history, name)
        if last is not None and i.now - last < s.cooldown_seconds:
            wait = s.cooldown_seconds - (i.now - last)
            return CheckResult(
                "CooldownActive",
                f"pod {name} was healed {i.now - last:.0f} s ago; the next heal may start in "
                f"{wait:.0f} s (cooldownSeconds {s.cooldown_seconds:g})",
                True,
            )
    return PASS


def backoff_seconds(failures: int, settings: HealSettings) -> float:
    """Wait after ``failures`` failed heals in a row: base, 2*base, 4*base... up to the cap."""
    if failures <= 0:
        return 0.0
    return float(
        min(settings.backoff_base_seconds * 2 ** (failures - 1), settings.backoff_max_seconds)
    )


def check_backoff(i: CheckInput) -> CheckResult:
    s = i.candidate.node.settings
    for name in i.candidate.names():
        failures = failures_in_a_row(i.candidate.node.history, name)
        last = last_finished_at(i.candidate.node.history, name)
        wait = backoff_seconds(failures, s)
        if failures and last is not None and i.now - last < wait:
            return CheckResult(
                "BackoffActive",
                f"pod {name}: {failures} heal(s) failed in a row; backing off {wait:.0f} s, "
                f"next attempt in {wait - (i.now - last):.0f} s",
                True,
            )
    return PASS


def check_correlated(i: CheckInput) -> CheckResult:
    if not i.correlated:
        return PASS  # while it holds, the limit applies fleet-wide: a lone slow pod elsewhere
        # is most likely the same shared cause showing early
    running = sum(len(n.active) for n in i.nodes) + len(i.planned)
    if running == 0:
        return PASS  # one diagnostic heal at a time is allowed
    names = ", ".join(node for _, node in i.correlated)
    return CheckResult(
        str(EventReason.CORRELATED_FAILURE),
        f"most pods of {len(i.correlated)} nodes ({names}) breach together: the cause is "
        "likely shared (an upstream, the network) and respawning gateways will not fix it; "
        "healing one pod at a time. Check upstreams and the network.",
        True,
    )


def check_topology(i: CheckInput) -> CheckResult:
    me = i.candidate.node
    others = [
        n.name
        for n in i.nodes
        if n.key != me.key
        and n.namespace == me.namespace
        and n.topology == me.topology
        and n.active
    ] + [
        c.node.name
        for c in i.planned
        if c.node.key != me.key
        and c.node.namespace == me.namespace
        and c.node.topology == me.topology
    ]
    if not others:
        return PASS
    return CheckResult(
        "AnotherNodeHealing",
        f"node {sorted(set(others))[0]} of topology {me.topology} is healing; one node of a "
        "topology heals at a time",
        True,
    )


def allowed_unavailable(total: int, percent: float) -> int:
    """Budget of pods out of rotation: floor(total * percent), at least 1 from 2 pods on."""
    budget = int(total * percent // 100)
    return max(1, budget) if total >= 2 else budget


def check_budget(i: CheckInput) -> CheckResult:
    cand = i.candidate
    node = cand.node
    if cand.scope is Scope.NODE:
        return PASS  # see module docstring: the whole node is not serving
    total = max(node.replicas, len(node.pods))
    out = {p.key.pod for p in node.pods if not p.ready or not p.in_rotation}
    out |= {n for rec in node.active for n in pod_names(rec)}
    out |= {n for c in i.planned if c.node.key == node.key for n in c.names()}
    after = out | set(cand.names())
    allowed = allowed_unavailable(total, node.settings.max_unavailable_percent)
    if total == 1:
        not_serving = all(not p.ready for p in cand.pods) or any(
            f.code is Code.SCRAPE_FAILING for f in cand.findings
        )
        allowed = 1 if not_serving else 0
        if not allowed:
            return CheckResult(
                "MaxUnavailable",
                f"node {node.name} has a single pod that still serves; isolating it would take "
                "the node offline. Add replicas to let the operator heal it.",
                True,
            )
    if len(after) > allowed:
        return CheckResult(
            "MaxUnavailable",
            f"{len(out)} of {total} pods of node {node.name} are already out of rotation "
            f"({', '.join(sorted(out))}); maxUnavailablePercent "
            f"{node.settings.max_unavailable_percent:g} allows {allowed}",
            True,
        )
    return PASS


CHECKS: tuple[Check, ...] = (
    check_enabled,
    check_metrics,
    check_in_progress,
    check_cooldown,
    check_backoff,
    check_correlated,
    check_topology,
    check_budget,
)


def evaluate(i: CheckInput, checks: Sequence[Check] = CHECKS) -> CheckResult:
    for check in checks:
        result = check(i)
        if result.blocked:
            return result
    return PASS


# ---------------------------------------------------------------- the decision


def candidates(
    node: NodeView, assessment: Assessment, *, whole_node: bool = True
) -> list[Candidate]:
    """Breaching pods of a node; the whole node as one candidate when all its pods breach
    (unless ``whole_node`` is False: during a correlated failure only single pods are
    healed, so the one diagnostic heal never takes a whole node out)."""
    breaching: list[tuple[PodView, tuple[Finding, ...]]] = []
    for pod in node.pods:
        verdict = assessment.verdicts.get(pod.key)
        if verdict is not None and verdict.kind is Kind.BREACHING:
            breaching.append((pod, verdict.reasons))
    if whole_node and len(node.pods) >= 2 and len(breaching) == len(node.pods):
        findings = tuple(f for _, fs in breaching for f in fs)
        return [Candidate(node, Scope.NODE, node.pods, findings)]
    return [Candidate(node, Scope.POD, (pod,), fs) for pod, fs in breaching]


def correlated_nodes(
    nodes: Sequence[NodeView], assessment: Assessment, *, min_nodes: int
) -> tuple[NodeKey, ...]:
    """Nodes where most (more than half) pods breach, if there are at least ``min_nodes``.

    Pods already being healed count as breaching: once isolated they get no traffic and
    their breach evidence fades, which must not make a fleet-wide failure look local.
    """
    hit = []
    for node in nodes:
        healing = {n for rec in node.active for n in pod_names(rec)}
        count = sum(
            1
            for p in node.pods
            if p.key.pod in healing
            or ((v := assessment.verdicts.get(p.key)) is not None and v.kind is Kind.BREACHING)
        )
        if node.pods and count * 2 > len(node.pods):
            hit.append(node.key)
    return tuple(sorted(hit)) if len(hit) >= min_nodes else ()


def decide(
    nodes: Sequence[NodeView],
    assessment: Assessment,
    *,
    now: float,
    correlated_min_nodes: int = 2,
) -> Decision:
    """Which heals start this poll, which are blocked and why, and each node's conditions."""
    correlated = correlated_nodes(nodes, assessment, min_nodes=correlated_min_nodes)
    starts: list[Candidate] = []
    blocked: list[Blocked] = []
    for node in sorted(nodes, key=lambda n: n.key):
        for cand in candidates(node, assessment, whole_node=not correlated):
            result = evaluate(CheckInput(cand, nodes, assessment, now, tuple(starts), correlated))
            if result.blocked:
                blocked.append(Blocked(cand, result))
            else:
                starts.append(cand)
    conditions = {
        node.key: node_conditions(node, assessment, starts=starts, blocked=blocked)
        for node in nodes
    }
    return Decision(tuple(starts), tuple(blocked), conditions)


def start_record(candidate: Candidate, *, now: float) -> Record:
    """The ``status.heal`` record that begins a heal (step Isolating, Pending)."""
    node = candidate.node
    return new_record(
        namespace=node.namespace,
        node=node.name,
        scope=candidate.scope,
        pods=[{"name": p.key.pod, "uid": p.uid, "ip": p.ip} for p in candidate.pods],
        trigger=[f.as_dict() for f in candidate.findings],
        statefulset=node.statefulset,
        replicas=node.replicas,
        now=now,
    )
