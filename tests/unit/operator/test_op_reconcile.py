"""Reconcile orchestration with fakes at the operator's own adapter boundary (kube.Kube and
gatewayclient.GatewayClient): failure paths the real-cluster tests cannot provoke on demand
(an apply refused, a status write conflict, a gateway refusing a config)."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from hexagon_operator import api, reconcile
from hexagon_operator.config import Settings
from hexagon_operator.gatewayclient import GatewayClient, PushResult, Target
from hexagon_operator.kube import Conflict, Kube, KubeError

Key = tuple[str, str, str]  # kind, namespace, name


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.applied: list[Key] = []
        self.events: list[tuple[str, str]] = []
        self.fail_apply: set[str] = set()
        self.status_conflicts = 0
        self.version = 1

    def put(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.version += 1
        stored = copy.deepcopy(dict(obj))
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = stored

    async def get(
        self, api_version: str, kind: str, *, namespace: str, name: str
    ) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    async def list(
        self, api_version: str, kind: str, *, namespace: str, selector: str = ""
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if (k, ns) == (kind, namespace)
        ]

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        if obj["kind"] in self.fail_apply:
            raise KubeError(403, "Forbidden", f"{obj['kind'].lower()}s is forbidden")
        self.applied.append((obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]))
        self.put(obj)
        return dict(obj)

    async def create_if_absent(self, obj: Mapping[str, Any]) -> bool:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.objects:
            return False
        stored = copy.deepcopy(dict(obj))
        data = stored.pop("stringData")
        stored["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.put(stored)
        return True

    async def add_owner(self, api_version: str, kind: str, *, namespace: str, name: str,
                        owner: Mapping[str, Any]) -> None:  # fmt: skip
        self.objects[(kind, namespace, name)]["metadata"]["ownerReferences"].append(dict(owner))

    async def patch_node_status(self, *, namespace: str, name: str, patch: Mapping[str, Any],
                                resource_version: str) -> dict[str, Any]:  # fmt: skip
        node = self.objects[(api.KIND, namespace, name)]
        if self.status_conflicts:
            self.status_conflicts -= 1
            self.version += 1
            node["metadata"]["resourceVersion"] = str(self.version)
            raise Conflict(409, "Conflict", "the object has been modified")
        assert node["metadata"]["resourceVersion"] == resource_version
        node.setdefault("status", {}).update(copy.deepcopy(dict(patch)))
        self.version += 1
        node["metadata"]["resourceVersion"] = str(self.version)
        return node

    async def set_pod_condition(self, *, namespace: str, name: str,
                                condition: Mapping[str, Any]) -> None:  # fmt: skip
        pod = self.objects[("Pod", namespace, name)]
        pod["status"]["conditions"].append(dict(condition))

    async def emit_event(self, involved: Mapping[str, Any], *, reason: str, message: str,
                         warning: bool = False, now: datetime | None = None) -> None:  # fmt: skip
        self.events.append((reason, message))


class FakeGateway:
    def __init__(self, *, status: int = 200) -> None:
        self.status = status
        self.pushed: list[str] = []

    async def push(self, target: Target, *, token: str, document: str) -> PushResult:
        self.pushed.append(target.pod)
        ok = self.status == 200
        msg = "" if ok else "routes[b].upstream: unknown upstream"
        return PushResult(target.pod, ok, self.status == 400, self.status, msg, 0.001)

    async def push_all(self, targets: Any, *, token: str, document: str) -> list[PushResult]:
        return [await self.push(t, token=token, document=document) for t in targets]


NS = "ns"


def node(name: str = "n", spoke: str = "north", generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": generation},
        "spec": {"topology": "t", "spoke": spoke, "replicas": 1},
    }


def ready_pod(name: str = "n-0") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "labels": {api.LABEL_INSTANCE: "n", api.LABEL_TOPOLOGY: "t"},
        },
        "spec": {"readinessGates": [{"conditionType": api.READINESS_GATE}]},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.9",
            "conditions": [{"type": "ContainersReady", "status": "True"}],
            "containerStatuses": [{"restartCount": 0}],
        },
    }


def runtime(kube: FakeKube, gateway: FakeGateway | None = None) -> reconcile.Runtime:
    return reconcile.Runtime(
        kube=cast(Kube, kube),
        gateway=cast(GatewayClient, gateway or FakeGateway()),
        settings=Settings(),
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        new_token=lambda: "generated-token",
    )


def conditions(kube: FakeKube, name: str = "n") -> dict[str, tuple[str, str]]:
    status = kube.objects[(api.KIND, NS, name)].get("status") or {}
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


async def test_applies_every_child_and_writes_status() -> None:
    kube = FakeKube()
    kube.put(node())
    await reconcile.reconcile(runtime(kube), kube.objects[(api.KIND, NS, "n")])
    kinds = sorted(k for k, _, _ in kube.applied)
    assert kinds == ["ConfigMap", "PodDisruptionBudget", "Service", "Service", "StatefulSet"]
    assert conditions(kube)["Degraded"] == ("False", "AsExpected")
    assert "AdminTokenCreated" in {r for r, _ in kube.events}


async def test_admin_token_is_never_overwritten() -> None:
    kube = FakeKube()
    kube.put(node())
    rt = runtime(kube)
    await reconcile.reconcile(rt, kube.objects[(api.KIND, NS, "n")])
    rt.new_token = lambda: "another-token"
    kube.put(node("m", spoke="south"))
    await reconcile.reconcile(rt, kube.objects[(api.KIND, NS, "m")])
    secret = kube.objects[("Secret", NS, "t-hexagon-admin")]
    assert base64.b64decode(secret["data"]["token"]).decode() == "generated-token"
    assert [o["name"] for o in secret["metadata"]["ownerReferences"]] == ["n", "m"]


async def test_refused_apply_is_reported_and_raised() -> None:
    kube = FakeKube()
    kube.put(node())
    kube.fail_apply = {"StatefulSet"}
    with pytest.raises(KubeError):
        await reconcile.reconcile(runtime(kube), kube.objects[(api.KIND, NS, "n")])
    assert conditions(kube)["Degraded"] == ("True", "ApplyFailed")
    message = kube.objects[(api.KIND, NS, "n")]["status"]["conditions"]
    assert any("StatefulSet n" in c["message"] and "forbidden" in c["message"] for c in message)
    assert ("ApplyFailed", next(m for r, m in kube.events if r == "ApplyFailed")) in kube.events


async def test_status_conflict_is_retried_with_a_fresh_read() -> None:
    kube = FakeKube()
    kube.put(node())
    kube.status_conflicts = 2
    await reconcile.reconcile(runtime(kube), kube.objects[(api.KIND, NS, "n")])
    assert conditions(kube)["Ready"][0] == "False"


async def test_config_pushed_once_per_revision_and_rejection_reported() -> None:
    kube = FakeKube()
    kube.put(node())
    kube.put(ready_pod())
    gateway = FakeGateway(status=400)
    rt = runtime(kube, gateway)
    await reconcile.reconcile(rt, kube.objects[(api.KIND, NS, "n")])
    assert gateway.pushed == ["n-0"]
    assert conditions(kube)["Degraded"] == ("True", "ConfigRejected")
    gateway.status = 200
    await reconcile.reconcile(rt, kube.objects[(api.KIND, NS, "n")])
    await reconcile.reconcile(rt, kube.objects[(api.KIND, NS, "n")])
    assert gateway.pushed == ["n-0", "n-0"]  # retried until accepted, then not again
    assert conditions(kube)["Degraded"] == ("False", "AsExpected")


async def test_new_ready_pod_gets_config_then_enters_rotation() -> None:
    kube = FakeKube()
    kube.put(node())
    gateway = FakeGateway()
    rt = runtime(kube, gateway)
    await reconcile.reconcile(rt, kube.objects[(api.KIND, NS, "n")])
    kube.put(ready_pod())
    assert await reconcile.admit_pod(rt, kube.objects[("Pod", NS, "n-0")])
    pod = kube.objects[("Pod", NS, "n-0")]
    gate = [c for c in pod["status"]["conditions"] if c["type"] == api.READINESS_GATE]
    assert gate and gate[0]["status"] == "True"
    assert gateway.pushed == ["n-0"]
    # a second event for the same pod changes nothing
    assert not await reconcile.admit_pod(rt, kube.objects[("Pod", NS, "n-0")])
    assert gateway.pushed == ["n-0"]


async def test_spoke_conflict_marks_both_nodes() -> None:
    kube = FakeKube()
    kube.put(node("a"))
    kube.put(node("b"))
    rt = runtime(kube)
    for name in ("a", "b"):
        await reconcile.reconcile(rt, kube.objects[(api.KIND, NS, name)])
    await reconcile.refresh_status(rt, namespace=NS, name="a")
    assert conditions(kube, "a")["SpokeConflict"] == ("True", "SpokeConflict")
    assert conditions(kube, "b")["SpokeConflict"] == ("True", "SpokeConflict")
