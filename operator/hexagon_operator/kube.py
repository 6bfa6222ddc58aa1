"""The only module that talks to the Kubernetes API.

Why the official ``kubernetes`` client and not kopf's patching: kopf can only patch the object
a handler was called for, while reconciling means applying five child kinds with server-side
apply, creating a Secret without ever overwriting it, patching ``pods/status`` of pods the
handler was not called for, and writing the HexagonNode's status with optimistic concurrency.
The client is synchronous, so every call runs in a worker thread (``asyncio.to_thread``) and
the event loop that serves kopf's watches never blocks. Requests go through the client's
generic ``call_api`` with explicit paths, which keeps server-side apply (content type
``application/apply-patch+yaml``, ``fieldManager=hexagon-operator``, ``force=true``) the same
for every kind instead of going through a different generated method per kind.

404 and 409 are mapped to ``NotFound`` and ``Conflict`` so callers handle them explicitly;
everything else becomes ``KubeError`` with the API server's message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from . import api

log = logging.getLogger(__name__)

APPLY: Final = "application/apply-patch+yaml"
MERGE: Final = "application/merge-patch+json"
STRATEGIC: Final = "application/strategic-merge-patch+json"

# (apiVersion, kind) -> plural; every kind here is namespaced.
PLURALS: Final[Mapping[tuple[str, str], str]] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Secret"): "secrets",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    (api.API_VERSION, api.KIND): api.PLURAL,
}


class KubeError(Exception):
    """A failed API call, with the server's reason and message (for conditions and Events)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


def _error(exc: ApiException) -> KubeError:
    reason, message = str(exc.reason or ""), str(exc.body or exc)
    try:
        body = json.loads(exc.body or "{}")
        reason, message = str(body.get("reason", reason)), str(body.get("message", message))
    except (ValueError, AttributeError):
        pass
    status = int(exc.status or 0)
    kind = NotFound if status == 404 else Conflict if status == 409 else KubeError
    return kind(status, reason, message)


def path(api_version: str, kind: str, *, namespace: str, name: str = "", sub: str = "") -> str:
    plural = PLURALS[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    out = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out


class Kube:
    """Async facade over one ``ApiClient``; share one instance for the life of the operator."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster service account when present, else the kubeconfig (KUBECONFIG)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            request = self._client.param_serialize(
                method,
                url,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._client.call_api(*request, _request_timeout=30)
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            raise _error(exc) from None
        if response.status >= 400:
            text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
            raise _error(ApiException(status=response.status, reason=response.reason, body=text))
        parsed = json.loads(data) if data else {}
        return parsed if isinstance(parsed, dict) else {}

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        return await asyncio.to_thread(
            self._call, method, url, body=body, query=query, content_type=content_type
        )

    # -- generic object operations -------------------------------------------------------

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as ``hexagon-operator``, forcing ownership of the fields we set."""
        meta = obj["metadata"]
        url = path(obj["apiVersion"], obj["kind"], namespace=meta["namespace"], name=meta["name"])
        query = [("fieldManager", api.FIELD_MANAGER), ("force", "true")]
        return await self.request("PATCH", url, body=dict(obj), query=query, content_type=APPLY)

    async def get(
        self, api_version: str, kind: str, *, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request(
                "GET", path(api_version, kind, namespace=namespace, name=name)
            )
        except NotFound:
            return None

    async def list(
        self, api_version: str, kind: str, *, namespace: str, selector: str = ""
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", selector)] if selector else []
        result = await self.request(
            "GET", path(api_version, kind, namespace=namespace), query=query
        )
        return list(result.get("items") or [])

    async def create_if_absent(self, obj: Mapping[str, Any]) -> bool:
        """POST the object; False (and no change) when it already exists (409)."""
        url = path(obj["apiVersion"], obj["kind"], namespace=obj["metadata"]["namespace"])
        try:
            await self.request(
                "POST", url, body=dict(obj), query=[("fieldManager", api.FIELD_MANAGER)]
            )
        except Conflict:
            return False
        return True

    async def add_owner(
        self, api_version: str, kind: str, *, namespace: str, name: str, owner: Mapping[str, Any]
    ) -> None:
        """Add one owner reference; strategic merge keys ownerReferences by uid, so other
        owners stay (several HexagonNodes own their topology's shared Secret)."""
        body = {"metadata": {"ownerReferences": [dict(owner)]}}
        url = path(api_version, kind, namespace=namespace, name=name)
        await self.request("PATCH", url, body=body, content_type=STRATEGIC)

    # -- HexagonNode -----------------------------------------------------------------------

    async def patch_node_status(
        self, *, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge-patch ``status`` guarded by resourceVersion: a concurrent writer (the healer)
        makes this raise Conflict instead of being overwritten; the caller re-reads and retries."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(patch)}
        url = path(api.API_VERSION, api.KIND, namespace=namespace, name=name, sub="status")
        return await self.request("PATCH", url, body=body, content_type=MERGE)

    # -- pods --------------------------------------------------------------------------------

    async def set_pod_condition(
        self, *, namespace: str, name: str, condition: Mapping[str, Any]
    ) -> None:
        """Set one pod condition through pods/status; strategic merge keys conditions by type."""
        body = {"status": {"conditions": [dict(condition)]}}
        url = path("v1", "Pod", namespace=namespace, name=name, sub="status")
        await self.request("PATCH", url, body=body, content_type=STRATEGIC)

    async def delete_pod(self, *, namespace: str, name: str, uid: str) -> bool:
        """Delete one pod only if it is still the same pod (uid precondition), so a fresh
        replacement with the same name is never deleted. False when it is already gone or
        replaced (404/409)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            await self.request(
                "DELETE", path("v1", "Pod", namespace=namespace, name=name), body=body
            )
        except (NotFound, Conflict):
            return False
        return True

    async def patch_node_annotations(
        self, *, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Merge-patch annotations of a HexagonNode (None removes one); how the healer asks
        the reconciler for a heal epoch or a replica override."""
        body = {"metadata": {"annotations": dict(annotations)}}
        url = path(api.API_VERSION, api.KIND, namespace=namespace, name=name)
        await self.request("PATCH", url, body=body, content_type=MERGE)

    async def ensure_peering(self, *, name: str, namespaces: tuple[str, ...]) -> str:
        """Create kopf's peering object(s) if missing, so mandatory peering never leaves the
        operator paused for want of an object nobody created. Returns a problem to report,
        or "" when the objects exist."""
        body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
        urls = (
            [("ClusterKopfPeering", "/apis/kopf.dev/v1/clusterkopfpeerings")]
            if not namespaces
            else [
                ("KopfPeering", f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings")
                for ns in namespaces
            ]
        )
        for kind, url in urls:
            try:
                await self.request("POST", url, body={**body, "kind": kind})
            except Conflict:
                continue
            except KubeError as exc:
                return (
                    f"cannot create {kind} {name}: {exc} (install crds/kopfpeerings.kopf.dev.yaml)"
                )
        return ""

    # -- events ------------------------------------------------------------------------------

    async def emit_event(
        self,
        involved: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        warning: bool = False,
        now: datetime | None = None,
    ) -> None:
        """Post a core/v1 Event about ``involved`` (an object with apiVersion, kind, metadata).
        Events are best effort: a failure is logged, never raised into a reconcile."""
        meta = involved.get("metadata") or {}
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = str(meta.get("namespace") or "default")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'hexagon')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": api.MANAGED_BY},
            "reportingComponent": api.MANAGED_BY,
            "reportingInstance": api.MANAGED_BY,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.request("POST", path("v1", "Event", namespace=namespace), body=event)
        except KubeError as exc:
            log.warning("event %s not posted: %s", reason, exc)
