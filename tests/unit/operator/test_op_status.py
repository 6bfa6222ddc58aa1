"""Status by the API conventions: condition tables, transition times, write-only-on-change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hexagon_operator.status import (
    Observed,
    desired_status,
    health,
    spoke_conflicts,
    status_patch,
    verdicts,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
STEADY = Observed(
    generation=4,
    desired_replicas=3,
    selector="app.kubernetes.io/instance=n,app.kubernetes.io/name=hexagon-gateway",
    config_revision="abc",
    sts_exists=True,
    sts_generation=7,
    sts_observed_generation=7,
    replicas=3,
    ready_replicas=3,
    updated_replicas=3,
    current_revision="n-1",
    update_revision="n-1",
    spoke="north",
    topology="demo",
)


def _by_type(o: Observed) -> dict[str, tuple[str, str]]:
    return {v.type: (v.status, v.reason) for v in verdicts(o, name="n")}


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        pytest.param(
            STEADY,
            {
                "Ready": ("True", "AllReplicasReady"),
                "Progressing": ("False", "RolloutComplete"),
                "Degraded": ("False", "AsExpected"),
                "SpokeConflict": ("False", "SpokeUnique"),
            },
            id="steady",
        ),
        pytest.param(
            replace(STEADY, sts_exists=False, replicas=0, ready_replicas=0, updated_replicas=0),
            {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("True", "RollingOut")},
            id="just-created",
        ),
        pytest.param(
            replace(STEADY, update_revision="n-2", updated_replicas=1),
            {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("True", "RollingOut")},
            id="rolling-update",
        ),
        pytest.param(
            replace(STEADY, sts_generation=8),
            {"Progressing": ("True", "RollingOut")},
            id="sts-not-yet-observed",
        ),
        pytest.param(
            replace(STEADY, desired_replicas=5),
            {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("True", "RollingOut")},
            id="scaling-up",
        ),
        pytest.param(
            replace(STEADY, ready_replicas=2),
            {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("False", "RolloutComplete")},
            id="one-pod-out-of-rotation",
        ),
        pytest.param(
            replace(STEADY, desired_replicas=0, replicas=0, ready_replicas=0, updated_replicas=0),
            {"Ready": ("False", "ScaledToZero"), "Progressing": ("False", "RolloutComplete")},
            id="scaled-to-zero",
        ),
        pytest.param(
            replace(STEADY, conflicting_nodes=("other",)),
            {"SpokeConflict": ("True", "SpokeConflict"), "Degraded": ("True", "SpokeConflict")},
            id="spoke-conflict",
        ),
        pytest.param(
            replace(STEADY, apply_error="statefulsets is forbidden", conflicting_nodes=("o",)),
            {"Degraded": ("True", "ApplyFailed")},
            id="apply-failure-wins",
        ),
        pytest.param(
            replace(STEADY, rejected_pods=("n-0",), reject_message="routes[0]: bad"),
            {"Degraded": ("True", "ConfigRejected"), "Ready": ("True", "AllReplicasReady")},
            id="config-rejected-old-config-serves",
        ),
    ],
)
def test_verdicts(observed: Observed, expected: dict[str, tuple[str, str]]) -> None:
    got = _by_type(observed)
    assert {k: got[k] for k in expected} == expected


def test_conflict_message_names_the_other_node_and_the_fix() -> None:
    v = next(v for v in verdicts(replace(STEADY, conflicting_nodes=("b", "a")), name="n"))
    assert "claimed by a, b" in v.message and "delete one" in v.message


def _conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_transition_time_kept_unless_status_flips() -> None:
    first = desired_status({}, STEADY, name="n", now=T0)
    later = T0 + timedelta(minutes=5)
    same = desired_status(first, replace(STEADY, generation=5), name="n", now=later)
    assert _conds(same)["Ready"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert _conds(same)["Ready"]["observedGeneration"] == 5
    flipped = desired_status(first, replace(STEADY, ready_replicas=1), name="n", now=later)
    assert _conds(flipped)["Ready"]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert _conds(flipped)["Degraded"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"


@pytest.mark.parametrize(
    ("old_reason", "observed", "expected"),
    [
        pytest.param(
            "RespawnsFailing",
            STEADY,
            ("True", "RespawnsFailing"),
            id="healer-degraded-survives-reconcile",
        ),
        pytest.param("ApplyFailed", STEADY, ("False", "AsExpected"), id="own-degraded-clears"),
        pytest.param(
            "RespawnsFailing",
            replace(STEADY, apply_error="boom"),
            ("True", "ApplyFailed"),
            id="reconciler-trouble-replaces-it",
        ),
    ],
)
def test_reconcile_does_not_clear_the_healers_degraded(
    old_reason: str, observed: Observed, expected: tuple[str, str]
) -> None:
    first = desired_status({}, STEADY, name="n", now=T0)
    first["conditions"] = [
        {**c, "status": "True", "reason": old_reason, "message": "m"}
        if c["type"] == "Degraded"
        else c
        for c in first["conditions"]
    ]
    later = desired_status(first, observed, name="n", now=T0 + timedelta(minutes=1))
    degraded = _conds(later)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == expected


def test_healer_and_api_agree_on_the_degraded_reason() -> None:
    from hexagon_operator.api import Reason
    from hexagon_operator.health.conditions import RESPAWNS_FAILING

    assert RESPAWNS_FAILING == Reason.RESPAWNS_FAILING


def test_foreign_conditions_and_fields_are_kept() -> None:
    healing = {
        "type": "Healing",
        "status": "True",
        "reason": "PodIsolated",
        "message": "m",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    current: dict[str, Any] = {
        "weights": {"n-0": 0},
        "heal": {"pod": "n-0", "step": "probe"},
        "conditions": [healing],
    }
    status = desired_status(current, STEADY, name="n", now=T0)
    assert status["weights"] == {"n-0": 0} and status["heal"] == current["heal"]
    assert _conds(status)["Healing"] == healing
    assert status["health"] == "Healing"
    assert [c["type"] for c in status["conditions"]][:4] == [
        "Ready",
        "Progressing",
        "Degraded",
        "SpokeConflict",
    ]


def test_patch_is_none_when_nothing_changed() -> None:
    first = desired_status({}, STEADY, name="n", now=T0)
    again = desired_status(first, STEADY, name="n", now=T0 + timedelta(hours=1))
    assert status_patch(first, again) is None


def test_patch_holds_only_changed_fields() -> None:
    first = desired_status({}, STEADY, name="n", now=T0)
    scaled = desired_status(first, replace(STEADY, ready_replicas=2), name="n", now=T0)
    patch = status_patch(first, scaled)
    assert patch is not None
    assert set(patch) == {"readyReplicas", "health", "conditions"}


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param({"Ready": "True", "Degraded": "False"}, "Healthy", id="healthy"),
        pytest.param({"Ready": "True", "Degraded": "True"}, "Degraded", id="degraded-wins"),
        pytest.param({"Ready": "False", "SpokeConflict": "True"}, "Degraded", id="conflict"),
        pytest.param({"Ready": "True", "Healing": "True"}, "Healing", id="healing"),
        pytest.param({"Ready": "False", "Progressing": "True"}, "Progressing", id="progressing"),
        pytest.param({"Ready": "False", "Progressing": "False"}, "Unknown", id="stuck"),
        pytest.param({}, "Unknown", id="no-conditions"),
    ],
)
def test_health(statuses: dict[str, str], expected: str) -> None:
    assert health([{"type": t, "status": s} for t, s in statuses.items()]) == expected


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param([("n", "north"), ("m", "south")], (), id="unique"),
        pytest.param([("n", "north"), ("m", "north")], ("m",), id="one-other"),
        pytest.param([("n", "north"), ("z", "north"), ("a", "north")], ("a", "z"), id="sorted"),
        pytest.param([("n", "north")], (), id="alone"),
    ],
)
def test_spoke_conflicts(claims: list[tuple[str, str]], expected: tuple[str, ...]) -> None:
    assert spoke_conflicts(name="n", spoke="north", claims=claims) == expected
