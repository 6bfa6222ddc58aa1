"""Monitor (window across polls, reset on a new pod uid) and the operator's heal metrics."""

from __future__ import annotations

from typing import Any

import pytest
from hexagon_operator.health.metrics import (
    HealMetrics,
    isolation_seconds,
    respawn_seconds,
    step_durations,
)
from hexagon_operator.health.monitor import Monitor
from hexagon_operator.health.records import iso
from hexagon_operator.health.samples import Observation, PipelineStatus, PodKey, PodSignals
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.verdicts import Kind

KEY = PodKey("ns", "a", "a-0")
PEER = PodKey("ns", "a", "a-1")
SLOW = PodSignals(p99_seconds=2.0, error_ratio=0.0, request_rate=10.0, up=1.0, scrape_age_seconds=1)
FAST = PodSignals(p99_seconds=0.1, error_ratio=0.0, request_rate=10.0, up=1.0, scrape_age_seconds=1)


def poll(at: float, signals: PodSignals) -> Observation:
    return Observation(at=at, status=PipelineStatus.OK, pods={KEY: signals, PEER: FAST})


@pytest.mark.parametrize(
    ("uid_after", "kind"),
    [
        pytest.param("uid-1", Kind.BREACHING, id="same-pod-keeps-its-streak"),
        pytest.param("uid-2", Kind.HEALTHY, id="replacement-starts-a-fresh-window"),
    ],
)
def test_monitor_resets_the_window_of_a_replaced_pod(uid_after: str, kind: Kind) -> None:
    monitor = Monitor(HealSettings())
    for t in range(2):
        monitor.update(poll(t, SLOW), {KEY: "uid-1", PEER: "p"})
    assessment = monitor.update(poll(2, SLOW), {KEY: uid_after, PEER: "p"})
    assert assessment.verdicts[KEY].kind is kind


def test_monitor_keeps_a_streak_in_a_window_shorter_than_the_streak() -> None:
    monitor = Monitor(HealSettings(window_seconds=10))
    for t in (0, 10, 20):
        assessment = monitor.update(poll(t, SLOW), {KEY: "u", PEER: "p"})
    assert assessment.verdicts[KEY].kind is Kind.BREACHING


def record(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": "r1",
        "outcome": "Restored",
        "outcomeReason": "Restored",
        "startedAt": iso(100),
        "trigger": [{"code": "ScrapeFailing", "since": iso(97)}],
        "respawned": [{"name": "a-0", "uid": "u2"}],
        "steps": [
            {"step": "Isolating", "enteredAt": iso(100), "doneAt": iso(100.5)},
            {"step": "Isolated", "enteredAt": iso(101)},
            {"step": "Probing", "enteredAt": iso(103), "doneAt": iso(113)},
            {"step": "ProbeFailed", "enteredAt": iso(114)},
            {"step": "Respawning", "enteredAt": iso(114), "doneAt": iso(114.2)},
            {"step": "Respawned", "enteredAt": iso(120)},
            {"step": "Restoring", "enteredAt": iso(121), "doneAt": iso(121.5)},
            {"step": "Done", "enteredAt": iso(125)},
        ],
    }
    rec.update(over)
    return rec


def test_durations_from_the_record() -> None:
    rec = record()
    assert step_durations(rec)[0] == ("Isolating", 1.0)
    assert dict(step_durations(rec))["Probing"] == 11.0
    assert isolation_seconds(rec) == 3.5
    assert respawn_seconds(rec) == 21.5
    assert respawn_seconds(record(respawned=[])) is None
    assert isolation_seconds(record(trigger=[])) is None


def test_render_counts_each_finished_record_once() -> None:
    metrics = HealMetrics()
    metrics.observe_finished([record(), record()])
    metrics.observe_finished([record(), record(id="r2", outcome="Failed", outcomeReason="X")])
    metrics.observe_finished([record(id="r3", outcome=None)])  # still running: not counted
    metrics.observe_poll(Observation(at=0, status=PipelineStatus.QUERY_FAILED))
    text = metrics.render()
    assert 'hexagon_operator_heals_total{outcome="Restored",reason="Restored"} 1' in text
    assert 'hexagon_operator_heals_total{outcome="Failed",reason="X"} 1' in text
    assert 'hexagon_operator_prometheus_poll_errors_total{status="query-failed"} 1' in text
    assert 'hexagon_operator_breach_to_isolation_seconds_bucket{le="5.0"} 2' in text
    assert 'hexagon_operator_breach_to_isolation_seconds_bucket{le="2.0"} 0' in text
    assert "hexagon_operator_breach_to_isolation_seconds_count 2" in text
    assert 'hexagon_operator_heal_step_seconds_bucket{step="Probing",le="+Inf"} 2' in text
    assert "# TYPE hexagon_operator_heal_step_seconds histogram" in text
