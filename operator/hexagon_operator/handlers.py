"""Every kopf decorator of the operator, and nothing else: unpack, call one function, map errors.

- HexagonNode create/update/resume -> ``reconcile.reconcile``; a periodic daemon re-runs it
  (drift, pushes that did not land, status that no event refreshes, spoke conflicts);
- StatefulSet events -> ``reconcile.refresh_status`` of the owner, so readyReplicas and the
  conditions follow the pods promptly;
- Pod events -> ``reconcile.admit_pod``: the in-rotation gate is set as soon as a pod's
  containers are ready (a watch, not a timer, so a new pod is Ready within the watch latency).
API errors become ``kopf.TemporaryError`` (retried with a delay); a spec the operator cannot act
on becomes ``kopf.PermanentError`` (the API server's schema should make that unreachable).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from . import api, reconcile
from .config import Settings
from .gatewayclient import GatewayClient
from .health import loop as heal_loop
from .kube import Kube, KubeError

MANAGED = {api.LABEL_MANAGED_BY: api.MANAGED_BY}


def _runtime(memo: Any) -> reconcile.Runtime:
    runtime: reconcile.Runtime = memo.runtime
    return runtime


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, logger: Any, **_: Any) -> None:
    """Own kopf's names and harden its watches, then build the shared runtime."""
    ours: Settings = memo.settings
    settings.persistence.finalizer = api.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=api.PERSISTENCE_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.PERSISTENCE_PREFIX, key="last-handled-configuration"
    )
    # Without these a watch that the network silently drops is never noticed (kopf's known
    # silent-watch problem): the server ends each watch, and the client gives up a bit later.
    settings.watching.server_timeout = ours.watch_server_timeout_seconds
    settings.watching.client_timeout = ours.watch_client_timeout_seconds
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # One active operator: peering is mandatory unless explicitly standalone.
    settings.peering.standalone = ours.standalone
    settings.peering.mandatory = not ours.standalone
    settings.peering.name = ours.peering_name
    settings.peering.clusterwide = not ours.namespaces
    # Our own Events carry specific reasons; kopf's per-handler log Events would only add noise.
    settings.posting.level = logging.WARNING
    kube = Kube.from_environment()
    if not ours.standalone:
        problem = await kube.ensure_peering(name=ours.peering_name, namespaces=ours.namespaces)
        if problem:
            logger.error(f"peering is mandatory and handlers stay paused: {problem}")
    gateway = GatewayClient(timeout_seconds=ours.push_timeout_seconds)
    memo.runtime = reconcile.Runtime(kube=kube, gateway=gateway, settings=ours)
    # The fleet-wide heal loop and the operator's HTTP port (service discovery, metrics).
    memo.healing = await heal_loop.start(memo.runtime)


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    if getattr(memo, "healing", None) is not None:
        await memo.healing.stop()
    await runtime.gateway.close()
    runtime.kube.close()


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
async def reconcile_node(body: kopf.Body, memo: Any, **_: Any) -> None:
    try:
        await reconcile.reconcile(_runtime(memo), body)
    except api.SpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except KubeError as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc


@kopf.daemon(api.GROUP, api.VERSION, api.PLURAL, cancellation_timeout=5, initial_delay=5)
async def resync_node(
    *,
    stopped: kopf.DaemonStopped,
    name: str,
    namespace: str | None,
    memo: Any,
    logger: Any,
    **_: Any,
) -> None:
    """Periodic re-reconcile; reads the object fresh each time (the daemon's body is old)."""
    runtime = _runtime(memo)
    namespace = namespace or "default"
    while not stopped:
        try:
            body = await runtime.kube.get(api.API_VERSION, api.KIND, namespace=namespace, name=name)
            if body is None:
                return
            await reconcile.resync(runtime, body)
        except (KubeError, api.SpecError) as exc:
            logger.warning(f"resync failed, retrying next period: {exc}")
        await stopped.wait(runtime.settings.resync_seconds)


@kopf.on.event("apps", "v1", "statefulsets", labels=MANAGED)
async def statefulset_changed(
    body: kopf.Body, type: str | None, memo: Any, logger: Any, **_: Any
) -> None:
    meta = body.get("metadata") or {}
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") == api.KIND]
    if not owners or type == "DELETED":
        return
    try:
        await reconcile.refresh_status(
            _runtime(memo), namespace=str(meta.get("namespace")), name=str(owners[0]["name"])
        )
    except KubeError as exc:
        logger.warning(f"status refresh failed (the periodic resync will retry): {exc}")


@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def pod_changed(body: kopf.Body, type: str | None, memo: Any, logger: Any, **_: Any) -> None:
    if type == "DELETED":
        reconcile.forget_pod(_runtime(memo), body)
        return
    try:
        if await reconcile.admit_pod(_runtime(memo), body):
            logger.info(f"pod {body['metadata']['name']} put in rotation")
    except KubeError as exc:
        # Event handlers are not retried by kopf; the pod's next status change (or the
        # periodic resync's push) comes back here.
        logger.warning(f"putting the pod in rotation failed: {exc}")
