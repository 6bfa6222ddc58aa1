"""The heal executor: turns the pure plan's actions into Kubernetes and HTTP calls.

Why it exists: ``cycle``/``plan`` decide everything and do no I/O; something must write the
HexagonNode status (before a step's actions run - "Started" - and after - "Done"), run the
actions, and announce each step as an Event. This module is that thin something. It never
raises for a failed action: the failure is reported back as ``WorkResult.error`` so the
plan records it (``lastError``) and retries the step after ``action_retry_seconds``.

Effects, each idempotent (an operator restart may replay a Started step):

* ``SetInRotation`` - patch the pod's ``hexagon.dev/in-rotation`` condition through
  ``pods/status``; Kubernetes then drops (or re-adds) the pod from every Service's endpoints;
* ``SetWeight`` - recorded in ``status.weights``; the reconciler renders those into the
  gateway config and pushes it to the pods (``reconcile.reconcile`` right after the write);
* ``ProbePod`` - ``POST http://POD_IP:9901/debug/probe?mode=netstack`` with the topology's
  admin token (its Secret is created when absent), bounded by the probe deadline, judged by
  ``probe.judge_probe``;
* ``DeletePod`` - delete with a uid precondition, so a replacement is never deleted;
* ``ScaleStatefulSet`` - the heal epoch and replica override go on the HexagonNode as
  annotations and the reconciler (the StatefulSet's only writer) applies them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from hexagon_operator import api, pods, reconcile
from hexagon_operator.health.actions import (
    Action,
    DeletePod,
    EmitEvent,
    EventType,
    ProbePod,
    ScaleStatefulSet,
    SetInRotation,
    SetWeight,
)
from hexagon_operator.health.conditions import DEGRADED, ConditionInput
from hexagon_operator.health.cycle import NodePlan, Work, WorkResult
from hexagon_operator.health.plan import ProbeResult
from hexagon_operator.health.probe import judge_probe
from hexagon_operator.kube import Conflict, KubeError, NotFound
from hexagon_operator.status import Verdict, health, merge_conditions

log = logging.getLogger(__name__)
STATUS_RETRIES = 8
# The healer's Degraded reason; the reconciler owns Degraded otherwise (see _conditions).
RESPAWNS_FAILING = "RespawnsFailing"


@dataclass
class NodeRun:
    """One HexagonNode during one poll: its latest object and its pods by name."""

    body: dict[str, Any]
    pods: dict[str, dict[str, Any]]

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


class Healer:
    """Executes plans for the heal loop; one instance (and one HTTP session) per operator."""

    def __init__(self, runtime: reconcile.Runtime) -> None:
        self.rt = runtime
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    # ------------------------------------------------------------------ status and events

    async def persist(
        self, run: NodeRun, plan: NodePlan, *, weights: Mapping[str, int] | None = None
    ) -> bool:
        """Write ``status.heal``/``healHistory``, the healer's conditions and ``weights``
        (merged into the current map), guarded by resourceVersion. True when written or
        already so; False when the node is gone or the write kept conflicting."""
        wanted = plan.status()
        if not self._patch(run.body, plan, wanted, weights):
            return True  # the object read this poll already says so: no read, no write
        for _ in range(STATUS_RETRIES):
            node = await self.rt.kube.get(
                api.API_VERSION, api.KIND, namespace=run.namespace, name=run.name
            )
            if node is None:
                return False
            patch = self._patch(node, plan, wanted, weights)
            if not patch:
                run.body = node
                return True
            try:
                run.body = await self.rt.kube.patch_node_status(
                    namespace=run.namespace,
                    name=run.name,
                    patch=patch,
                    resource_version=str(node["metadata"]["resourceVersion"]),
                )
            except Conflict:
                continue  # the reconciler wrote in between: re-read and merge again
            except KubeError as exc:
                log.warning("heal status of %s/%s not written: %s", run.namespace, run.name, exc)
                return False
            return True
        log.warning("heal status of %s/%s kept conflicting", run.namespace, run.name)
        return False

    def _patch(
        self,
        node: Mapping[str, Any],
        plan: NodePlan,
        wanted: Mapping[str, Any],
        weights: Mapping[str, int] | None,
    ) -> dict[str, Any]:
        """The merge patch that brings ``node``'s status to the plan (empty when it is so)."""
        current = node.get("status") or {}
        patch: dict[str, Any] = {k: v for k, v in wanted.items() if current.get(k) != v}
        if weights:
            merged = {**(current.get("weights") or {}), **{k: int(v) for k, v in weights.items()}}
            if merged != current.get("weights"):
                patch["weights"] = merged
        conditions = _conditions(node, plan.conditions, now=self.rt.now())
        if conditions != (current.get("conditions") or []):
            patch["conditions"] = conditions
            word = health(conditions)
            if word != current.get("health"):
                patch["health"] = word
        return patch

    async def emit(self, run: NodeRun, events: Sequence[EmitEvent]) -> None:
        involved = {"apiVersion": api.API_VERSION, "kind": api.KIND, **run.body}
        for event in events:
            log.info("%s/%s %s: %s", run.namespace, run.name, event.reason, event.message)
            await self.rt.kube.emit_event(
                involved,
                reason=str(event.reason),
                message=event.message,
                warning=event.type is EventType.WARNING,
            )

    # ------------------------------------------------------------------ actions

    async def execute(self, run: NodeRun, work: Work, *, weights: dict[str, int]) -> WorkResult:
        """Run one record's actions (probes concurrently); never raises for a failed one.
        Weight changes are collected into ``weights`` for the caller's status write."""
        errors: list[str] = []
        probes: dict[str, ProbeResult] = {}
        probe_actions = [a for a in work.actions if isinstance(a, ProbePod)]
        others = [a for a in work.actions if not isinstance(a, ProbePod)]
        for action in others:
            try:
                await self._run(run, action, weights=weights)
            except (KubeError, OSError, ValueError) as exc:
                errors.append(f"{_describe(action)}: {exc}")
        if probe_actions:
            results = await asyncio.gather(*(self.probe(run, a) for a in probe_actions))
            probes = {a.pod: r for a, r in zip(probe_actions, results, strict=True)}
        return WorkResult(work.record_id, error="; ".join(errors) or None, probe=probes or None)

    async def _run(self, run: NodeRun, action: Action, *, weights: dict[str, int]) -> None:
        if isinstance(action, SetInRotation):
            await self._set_in_rotation(run, action)
        elif isinstance(action, SetWeight):
            weights[action.pod] = action.weight
        elif isinstance(action, DeletePod):
            gone = not await self.rt.kube.delete_pod(
                namespace=run.namespace, name=action.pod, uid=action.uid
            )
            if gone:
                log.info("pod %s/%s already gone or replaced", run.namespace, action.pod)
        elif isinstance(action, ScaleStatefulSet):
            await self._scale(run, action)

    async def _set_in_rotation(self, run: NodeRun, action: SetInRotation) -> None:
        status = "True" if action.in_rotation else "False"
        condition = {
            "type": api.READINESS_GATE,
            "status": status,
            "reason": "HealRestored" if action.in_rotation else "HealIsolated",
            "message": "put back in rotation by the hexagon healer"
            if action.in_rotation
            else "taken out of rotation by the hexagon healer (see the HexagonNode's status.heal)",
            "lastTransitionTime": self.rt.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        current = run.pods.get(action.pod)
        if current is not None and pods.gate_status(current) == status:
            return  # already so: no write, no new lastTransitionTime
        # A pod that is gone serves nobody: out of rotation, nothing to restore.
        with contextlib.suppress(NotFound):
            await self.rt.kube.set_pod_condition(
                namespace=run.namespace, name=action.pod, condition=condition
            )

    async def _scale(self, run: NodeRun, action: ScaleStatefulSet) -> None:
        spec_replicas = int((run.body.get("spec") or {}).get("replicas", 2))
        override = None if action.replicas == spec_replicas else str(action.replicas)
        await self.rt.kube.patch_node_annotations(
            namespace=run.namespace,
            name=run.name,
            annotations={
                api.ANNOTATION_HEAL_EPOCH: action.epoch,
                api.ANNOTATION_HEAL_REPLICAS: override,
            },
        )
        fresh = await self.rt.kube.get(
            api.API_VERSION, api.KIND, namespace=run.namespace, name=run.name
        )
        if fresh is None:
            raise KubeError(404, "NotFound", f"HexagonNode {run.name} vanished")
        run.body = fresh
        await reconcile.reconcile(self.rt, fresh)

    async def probe(self, run: NodeRun, action: ProbePod) -> ProbeResult:
        """The netstack probe, bounded by its deadline; every failure is a judged result."""
        try:
            token = await self._token(run)
        except (KubeError, api.SpecError) as exc:
            return ProbeResult(False, error=f"admin token unavailable: {exc}")
        url = f"http://{action.ip}:{api.ADMIN_PORT}/debug/probe?mode=netstack"
        headers = {"X-Auth-Token": token}
        status: int | None = None
        body: Any = None
        error: str | None = None
        try:
            async with asyncio.timeout(action.deadline_s):
                async with self._http().post(
                    url, json={"timeout_ms": action.timeout_ms}, headers=headers
                ) as resp:
                    status = resp.status
                    text = await resp.text()
                    try:
                        body = json.loads(text)
                    except ValueError:
                        body = text[:500]
        except TimeoutError:
            error = f"no answer within {action.deadline_s:g} s from {action.ip}"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        result = judge_probe(status=status, body=body, error=error)
        log.info("probe %s/%s: ok=%s %s", run.namespace, action.pod, result.ok, result.error or "")
        return result

    async def _token(self, run: NodeRun) -> str:
        spec = api.parse_spec(run.body.get("spec") or {})
        cached = self.rt.tokens.get((run.namespace, spec.topology))
        if cached:
            return cached
        return await reconcile.admin_token(self.rt, reconcile.node_ref(run.body), spec)

    async def push_weights(self, run: NodeRun) -> None:
        """Render the weights now in status into the gateway config and push it (best
        effort: the periodic resync re-pushes whatever did not land)."""
        try:
            fresh = await self.rt.kube.get(
                api.API_VERSION, api.KIND, namespace=run.namespace, name=run.name
            )
            if fresh is not None:
                await reconcile.reconcile(self.rt, fresh)
        except (KubeError, api.SpecError) as exc:
            log.warning("weights of %s/%s not pushed: %s", run.namespace, run.name, exc)


def _conditions(
    node: Mapping[str, Any], inputs: Sequence[ConditionInput], *, now: Any
) -> list[dict[str, Any]]:
    """The node's conditions with the healer's applied (lastTransitionTime kept unless the
    status flips). ``Degraded`` is shared with the reconciler (failed applies, conflicts): the
    healer only raises it for failing respawns and clears only what it raised."""
    existing = list((node.get("status") or {}).get("conditions") or [])
    current = {str(c.get("type")): c for c in existing}
    verdicts = []
    for c in inputs:
        if c.type == DEGRADED:
            mine = (current.get(DEGRADED) or {}).get("reason") == RESPAWNS_FAILING
            if c.status != "True" and not mine:
                continue
            if c.status != "True":
                c = ConditionInput(DEGRADED, "False", "AsExpected", "heals succeed")
        verdicts.append(Verdict(c.type, c.status, c.reason, c.message))
    if not verdicts:
        return existing
    generation = int((node.get("metadata") or {}).get("generation") or 0)
    return merge_conditions(existing, verdicts, generation=generation, now=now)


def _describe(action: Action) -> str:
    return f"{type(action).__name__}({getattr(action, 'pod', getattr(action, 'name', ''))})"
