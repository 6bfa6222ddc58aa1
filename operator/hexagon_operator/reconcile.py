"""Desired objects -> applied children -> pushed config -> observed status, for one node.

``reconcile`` renders every child with the pure builders, applies them with server-side
apply (idempotent; a spec change rolls out through the StatefulSet), pushes a changed gateway
config to running pods, and writes status. ``refresh_status`` recomputes status from what the
cluster shows and writes it only when it changed, with optimistic concurrency and retries.
``admit_pod`` puts a new pod in rotation once its containers are ready, after handing it the
current config. All API access goes through ``kube.Kube``; all HTTP to pods through
``gatewayclient.GatewayClient``; all decisions are in the pure modules.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import api, pods, resources
from .config import Settings
from .gatewayclient import GatewayClient, PushResult, Target
from .kube import Conflict, Kube, KubeError
from .resources.configmap import config_hash, config_revision, dump_config
from .resources.labels import child_names, owner_reference, selector_string
from .status import Observed, desired_status, spoke_conflicts, status_patch

log = logging.getLogger(__name__)
NodeKey = tuple[str, str]  # (namespace, name)
STATUS_RETRIES = 5


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Runtime:
    """Everything the reconciler needs, created once at startup (kept in kopf's memo).
    The dictionaries are operator-lifetime memory; losing them on restart only costs one
    extra push per pod, never a wrong decision."""

    kube: Kube
    gateway: GatewayClient
    settings: Settings
    now: Callable[[], datetime] = _utcnow
    new_token: Callable[[], str] = _new_token
    locks: dict[NodeKey, asyncio.Lock] = field(default_factory=dict)
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    apply_errors: dict[NodeKey, str] = field(default_factory=dict)
    rejected: dict[NodeKey, dict[str, str]] = field(default_factory=dict)
    pushed: dict[tuple[str, int], str] = field(default_factory=dict)

    def lock(self, key: NodeKey) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())


def node_ref(body: Mapping[str, Any]) -> api.NodeRef:
    meta = body["metadata"]
    return api.NodeRef(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
    )


def _involved(ref: api.NodeRef) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": ref.name, "namespace": ref.namespace, "uid": ref.uid},
    }


async def admin_token(rt: Runtime, ref: api.NodeRef, spec: api.NodeSpec) -> str:
    """The topology's admin token; creates the Secret once (never overwrites it) and makes
    this node one of its owners."""
    key = (ref.namespace, spec.topology)
    name = api.admin_secret_name(spec.topology)
    secret = await rt.kube.get("v1", "Secret", namespace=ref.namespace, name=name)
    if secret is None:
        wanted = resources.build_admin_secret(ref, spec, token=rt.new_token())
        if await rt.kube.create_if_absent(wanted):
            await rt.kube.emit_event(
                _involved(ref),
                reason=api.Reason.ADMIN_TOKEN_CREATED,
                message=f"created Secret {name} holding the admin token of topology "
                f"{spec.topology}",
            )
        secret = await rt.kube.get("v1", "Secret", namespace=ref.namespace, name=name)
    if secret is None:
        raise KubeError(404, "NotFound", f"Secret {name} vanished right after creation")
    owners = (secret.get("metadata") or {}).get("ownerReferences") or []
    if not any(o.get("uid") == ref.uid for o in owners):
        owner = owner_reference(ref) | {"controller": False}
        await rt.kube.add_owner("v1", "Secret", namespace=ref.namespace, name=name, owner=owner)
    raw = (secret.get("data") or {}).get(api.TOKEN_KEY, "")
    token = base64.b64decode(raw).decode() if raw else ""
    rt.tokens[key] = token
    return token


async def reconcile(rt: Runtime, body: Mapping[str, Any]) -> None:
    """Apply every child of the node, push a changed config, write status."""
    ref = node_ref(body)
    key = (ref.namespace, ref.name)
    spec = api.parse_spec(body.get("spec") or {})
    status = body.get("status") or {}
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    doc = resources.render_config(ref, spec, weights=status.get("weights") or {})
    revision = config_revision(doc)
    log.info("reconciling %s/%s generation %d", ref.namespace, ref.name, ref.generation)
    async with rt.lock(key):
        step = "admin-token Secret"
        try:
            token = await admin_token(rt, ref, spec)
            step = "ConfigMap"
            await rt.kube.apply(resources.build_configmap(ref, spec, doc=doc))
            # Push before applying the rest: route changes reach running pods first.
            step = "Pod list for the config push"
            await push_config(rt, ref, token=token, document=dump_config(doc), revision=revision)
            children = [
                resources.build_headless_service(ref, spec),
                resources.build_client_service(ref, spec),
                resources.build_pdb(ref, spec),
                resources.build_statefulset(
                    ref,
                    spec,
                    settings=rt.settings,
                    config_hash=config_hash(doc),
                    heal_epoch=str(annotations.get(api.ANNOTATION_HEAL_EPOCH, "")),
                    replicas=api.heal_replicas(annotations),
                ),
            ]
            for child in children:
                step = f"{child['kind']} {child['metadata']['name']}"
                await rt.kube.apply(child)
        except KubeError as exc:
            message = f"applying the {step} failed ({exc.status} {exc.reason}): {exc.message}"
            rt.apply_errors[key] = message
            await rt.kube.emit_event(
                _involved(ref), reason=api.Reason.APPLY_FAILED, message=message, warning=True
            )
            await refresh_status(rt, namespace=ref.namespace, name=ref.name)
            raise
        rt.apply_errors.pop(key, None)
    await refresh_status(rt, namespace=ref.namespace, name=ref.name, config_revision=revision)


async def push_config(
    rt: Runtime, ref: api.NodeRef, *, token: str, document: str, revision: str
) -> list[PushResult]:
    """Push ``document`` to every running pod of the node that has not acknowledged it."""
    selector = selector_string(ref.name)
    listed = await rt.kube.list("v1", "Pod", namespace=ref.namespace, selector=selector)
    due = {
        p["metadata"]["name"]: p
        for p in listed
        if pods.wants_push(p, pushed=rt.pushed, revision=revision)
    }
    if not due:
        return []
    targets = [Target(pod=name, ip=pods.pod_ip(p)) for name, p in due.items()]
    results = await rt.gateway.push_all(targets, token=token, document=document)
    log.info(
        "pushed config %s of %s/%s to %d pods: %s",
        revision,
        ref.namespace,
        ref.name,
        len(results),
        ", ".join(f"{r.pod}={r.status} in {r.seconds * 1000:.0f} ms" for r in results),
    )
    rejected = rt.rejected.setdefault((ref.namespace, ref.name), {})
    for r in results:
        if r.ok:
            rt.pushed[pods.push_key(due[r.pod])] = revision
            rejected.pop(r.pod, None)
        elif r.rejected:
            rejected[r.pod] = r.message
    ok = [r for r in results if r.ok]
    slowest = max((r.seconds for r in ok), default=0.0)
    if ok:
        await rt.kube.emit_event(
            _involved(ref),
            reason=api.Reason.CONFIG_PUSHED,
            message=f"gateway config {revision} applied by {len(ok)}/{len(results)} pods "
            f"(slowest {slowest * 1000:.0f} ms)",
        )
    failed = [r for r in results if not r.ok]
    if failed:
        detail = "; ".join(f"{r.pod}: {r.status or 'no answer'} {r.message}" for r in failed)
        await rt.kube.emit_event(
            _involved(ref),
            reason=api.Reason.CONFIG_PUSH_FAILED,
            message=f"gateway config {revision} not applied by {len(failed)} pods "
            f"(they keep their config until the next push or restart): {detail}",
            warning=True,
        )
    return results


async def refresh_status(
    rt: Runtime, *, namespace: str, name: str, config_revision: str = ""
) -> bool:
    """Recompute and write status if it changed; True when a patch was written."""
    key = (namespace, name)
    for _attempt in range(STATUS_RETRIES):
        node = await rt.kube.get(api.API_VERSION, api.KIND, namespace=namespace, name=name)
        if node is None or (node.get("metadata") or {}).get("deletionTimestamp"):
            return False
        raw = node.get("spec") or {}
        try:
            spec = api.parse_spec(raw)
        except api.SpecError:
            return False
        sts = await rt.kube.get(
            "apps/v1", "StatefulSet", namespace=namespace, name=child_names(name)["statefulset"]
        )
        siblings = await rt.kube.list(api.API_VERSION, api.KIND, namespace=namespace)
        claims = [
            (str(s["metadata"]["name"]), str((s.get("spec") or {}).get("spoke", "")))
            for s in siblings
            if (s.get("spec") or {}).get("topology") == spec.topology
            and not s["metadata"].get("deletionTimestamp")
        ]
        rejected = rt.rejected.get(key) or {}
        observed = _observe(
            node,
            spec,
            sts=sts,
            conflicting=spoke_conflicts(name=name, spoke=spec.spoke, claims=claims),
            apply_error=rt.apply_errors.get(key, ""),
            rejected=rejected,
            config_revision=config_revision,
        )
        current = node.get("status") or {}
        desired = desired_status(current, observed, name=name, now=rt.now())
        patch = status_patch(current, desired)
        if patch is None:
            return False
        try:
            await rt.kube.patch_node_status(
                namespace=namespace,
                name=name,
                patch=patch,
                resource_version=str(node["metadata"]["resourceVersion"]),
            )
        except Conflict:
            continue  # someone (the healer, a user) wrote in between: re-read and recompute
        await _announce_transitions(rt, node, old=current, new=desired)
        return True
    raise KubeError(409, "Conflict", f"status of {namespace}/{name} kept changing underneath")


def _observe(
    node: Mapping[str, Any],
    spec: api.NodeSpec,
    *,
    sts: Mapping[str, Any] | None,
    conflicting: tuple[str, ...],
    apply_error: str,
    rejected: Mapping[str, str],
    config_revision: str,
) -> Observed:
    meta = node["metadata"]
    sts_status = (sts or {}).get("status") or {}
    return Observed(
        generation=int(meta.get("generation") or 0),
        desired_replicas=spec.replicas,
        selector=selector_string(meta["name"]),
        config_revision=config_revision,
        sts_exists=sts is not None,
        sts_generation=int(((sts or {}).get("metadata") or {}).get("generation") or 0),
        sts_observed_generation=int(sts_status.get("observedGeneration") or 0),
        replicas=int(sts_status.get("replicas") or 0),
        ready_replicas=int(sts_status.get("readyReplicas") or 0),
        updated_replicas=int(sts_status.get("updatedReplicas") or 0),
        current_revision=str(sts_status.get("currentRevision") or ""),
        update_revision=str(sts_status.get("updateRevision") or ""),
        conflicting_nodes=conflicting,
        spoke=spec.spoke,
        topology=spec.topology,
        apply_error=apply_error,
        rejected_pods=tuple(sorted(rejected)),
        reject_message="; ".join(sorted(set(rejected.values())))[:500],
    )


async def _announce_transitions(
    rt: Runtime, node: Mapping[str, Any], *, old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    """One Event per condition that flipped into a state a person should hear about."""
    before = {c["type"]: c["status"] for c in old.get("conditions") or []}
    told: set[tuple[str, str]] = set()
    for c in new.get("conditions") or []:
        if before.get(c["type"]) == c["status"] or (c["reason"], c["message"]) in told:
            continue
        told.add((c["reason"], c["message"]))
        bad = c["type"] in (api.Cond.DEGRADED, api.Cond.SPOKE_CONFLICT) and c["status"] == "True"
        became_ready = c["type"] == api.Cond.READY and c["status"] == "True"
        if bad or became_ready:
            involved = {"apiVersion": api.API_VERSION, "kind": api.KIND, **node}
            await rt.kube.emit_event(
                involved, reason=c["reason"], message=c["message"], warning=bad
            )


async def resync(rt: Runtime, body: Mapping[str, Any]) -> None:
    """Periodic pass: re-apply (drift), retry pushes that did not land, admit pods whose
    admission failed on a transient error, refresh status."""
    await reconcile(rt, body)
    ref = node_ref(body)
    listed = await rt.kube.list(
        "v1", "Pod", namespace=ref.namespace, selector=selector_string(ref.name)
    )
    admitted = [await admit_pod(rt, p) for p in listed if pods.wants_admission(p)]
    if any(admitted):
        await refresh_status(rt, namespace=ref.namespace, name=ref.name)


async def admit_pod(rt: Runtime, pod: Mapping[str, Any]) -> bool:
    """Hand a ready gateway process the current config and, for a new pod, set the
    in-rotation gate so it becomes Ready. True when the gate was set."""
    meta = pod.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    node_name = str((meta.get("labels") or {}).get(api.LABEL_INSTANCE, ""))
    admit = pods.wants_admission(pod)
    # A process the operator already pushed to gets later revisions from reconcile's push;
    # only new pods and restarted containers (a new push key) need a push from here.
    fresh = pods.push_key(pod) not in rt.pushed
    if not admit and not (fresh and pods.is_live(pod) and pods.containers_ready(pod)):
        return False
    cm = await rt.kube.get(
        "v1", "ConfigMap", namespace=namespace, name=child_names(node_name)["configmap"]
    )
    annotations = ((cm or {}).get("metadata") or {}).get("annotations") or {}
    revision = str(annotations.get(api.ANNOTATION_CONFIG_REVISION, ""))
    if cm is not None and pods.wants_push(pod, pushed=rt.pushed, revision=revision):
        topology = str((meta.get("labels") or {}).get(api.LABEL_TOPOLOGY, ""))
        token = rt.tokens.get((namespace, topology)) or await _read_token(rt, namespace, topology)
        target = Target(pod=name, ip=pods.pod_ip(pod))
        document = str((cm.get("data") or {}).get(api.CONFIG_KEY, ""))
        result = await rt.gateway.push(target, token=token, document=document)
        if result.ok:
            rt.pushed[pods.push_key(pod)] = revision
        else:
            # The pod still serves the config it read from the mounted ConfigMap at start.
            log.warning(
                "config push to %s/%s failed: %s %s", namespace, name, result.status, result.message
            )
    if not admit:
        return False
    message = "containers ready; put in rotation by hexagon-operator"
    condition = pods.in_rotation_condition(now=rt.now(), message=message)
    await rt.kube.set_pod_condition(namespace=namespace, name=name, condition=condition)
    return True


def forget_pod(rt: Runtime, pod: Mapping[str, Any]) -> None:
    """Drop the memory of a deleted pod's processes (keeps ``pushed`` bounded)."""
    uid = str((pod.get("metadata") or {}).get("uid", ""))
    for key in [k for k in rt.pushed if k[0] == uid]:
        del rt.pushed[key]


async def _read_token(rt: Runtime, namespace: str, topology: str) -> str:
    secret = await rt.kube.get(
        "v1", "Secret", namespace=namespace, name=api.admin_secret_name(topology)
    )
    raw = ((secret or {}).get("data") or {}).get(api.TOKEN_KEY, "")
    token = base64.b64decode(raw).decode() if raw else ""
    if token:
        rt.tokens[(namespace, topology)] = token
    return token
