"""When a pod enters rotation and when it needs the current config pushed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hexagon_operator import api, pods


def pod(
    *,
    phase: str = "Running",
    ready: bool = True,
    gate: str | None = None,
    with_gate: bool = True,
    ip: str = "10.244.0.7",
    deleting: bool = False,
    restarts: int = 0,
) -> dict[str, Any]:
    conditions = [{"type": "ContainersReady", "status": "True" if ready else "False"}]
    if gate is not None:
        conditions.append({"type": api.READINESS_GATE, "status": gate})
    meta: dict[str, Any] = {"name": "n-0", "uid": "u1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"readinessGates": [{"conditionType": api.READINESS_GATE}] if with_gate else []},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": conditions,
            "containerStatuses": [{"name": "gateway", "restartCount": restarts}],
        },
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(pod(), True, id="new-ready-pod"),
        pytest.param(pod(ready=False), False, id="containers-not-ready"),
        pytest.param(pod(gate="True"), False, id="already-in-rotation"),
        pytest.param(pod(gate="False"), False, id="isolated-by-healer-stays-out"),
        pytest.param(pod(with_gate=False), False, id="no-readiness-gate"),
        pytest.param(pod(phase="Pending"), False, id="pending"),
        pytest.param(pod(deleting=True), False, id="terminating"),
        pytest.param(pod(ip=""), False, id="no-ip-yet"),
    ],
)
def test_wants_admission(obj: dict[str, Any], expected: bool) -> None:
    assert pods.wants_admission(obj) is expected


@pytest.mark.parametrize(
    ("obj", "pushed", "expected"),
    [
        pytest.param(pod(), {}, True, id="never-pushed"),
        pytest.param(pod(), {("u1", 0): "rev1"}, False, id="has-revision"),
        pytest.param(pod(), {("u1", 0): "rev0"}, True, id="older-revision"),
        pytest.param(pod(restarts=1), {("u1", 0): "rev1"}, True, id="container-restarted"),
        pytest.param(pod(gate="False"), {}, True, id="isolated-pods-get-config-too"),
        pytest.param(pod(ready=False), {}, False, id="not-ready-reads-file-at-start"),
        pytest.param(pod(deleting=True), {}, False, id="terminating"),
    ],
)
def test_wants_push(
    obj: dict[str, Any], pushed: dict[tuple[str, int], str], expected: bool
) -> None:
    assert pods.wants_push(obj, pushed=pushed, revision="rev1") is expected


def test_in_rotation_condition() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    c = pods.in_rotation_condition(now=now, message="m")
    assert c == {
        "type": "hexagon.dev/in-rotation",
        "status": "True",
        "reason": "ContainersReady",
        "message": "m",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
    }
