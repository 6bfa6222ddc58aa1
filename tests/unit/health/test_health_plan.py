"""The heal state machine: every path, idempotent replay, and resume after a restart at
every persisted step, in virtual time.

A scenario is a list of ticks (time, the node's pods, the verdicts, the probe result). The
in-test executor follows the healer's protocol exactly: persist ``advance``'s record, run
the actions (here: record them), persist ``mark_done``. Every persisted record goes through
JSON, as it would through the apiserver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hexagon_operator.health.actions import (
    Action,
    DeletePod,
    EmitEvent,
    EventReason,
    ProbePod,
    ScaleStatefulSet,
    SetInRotation,
    SetWeight,
)
from hexagon_operator.health.plan import (
    Facts,
    PodFacts,
    ProbeResult,
    advance,
    mark_done,
    mark_error,
)
from hexagon_operator.health.records import (
    Outcome,
    Record,
    Scope,
    Step,
    StepState,
    heal_status,
    is_terminal,
    new_record,
    parse_time,
    read_active,
    read_history,
)
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.verdicts import Code, Finding, Kind, Verdict

S = HealSettings(
    drain_seconds=5,
    probe_deadline_seconds=10,
    recovery_hold_seconds=30,
    recovery_timeout_seconds=120,
    respawn_timeout_seconds=60,
    restore_wait_seconds=60,
    ramp_weights=(10, 50, 100),
    ramp_step_seconds=5,
    action_retry_seconds=15,
    max_action_retries=2,
    max_attempts=2,
)
OLD = PodFacts("gw-0", "uid-1", "10.0.0.1", containers_ready=True)
NEW = PodFacts("gw-0", "uid-2", "10.0.0.2", containers_ready=True)
NEW_STARTING = PodFacts("gw-0", "uid-2", "10.0.0.2", containers_ready=False)
PEER = PodFacts("gw-1", "uid-p", "10.0.0.9", containers_ready=True)
TRIGGER = Finding(Code.P99_ABOVE_THRESHOLD, "p99", "P99 1200 ms above 800 ms", 1200.0, 800.0)
BREACH = Verdict(Kind.BREACHING, (TRIGGER,))
IDLE = Verdict(Kind.HEALTHY, (), (Finding(Code.LOW_TRAFFIC, "p99", "idle"),))
JUDGED = Verdict(Kind.HEALTHY)
ANSWER = ProbeResult(True, {"loop_lag_ms": 3, "tasks": 12})
NO_ANSWER = ProbeResult(False, error="no answer within 10 s")


@dataclass(frozen=True)
class Tick:
    now: float
    pods: Mapping[str, PodFacts]
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)
    probe: Mapping[str, ProbeResult] | None = None

    def facts(self) -> Facts:
        return Facts(now=self.now, pods=self.pods, verdicts=self.verdicts)


@dataclass
class Run:
    record: Record
    actions: list[Action] = field(default_factory=list)
    events: list[EmitEvent] = field(default_factory=list)
    # (tick index, persisted record, actions executed so far) for every write
    snapshots: list[tuple[int, Record, int]] = field(default_factory=list)

    def persist(self, index: int, rec: Record) -> None:
        self.record = json.loads(json.dumps(rec))
        self.snapshots.append((index, self.record, len(self.actions)))

    @property
    def reasons(self) -> list[EventReason]:
        return [e.reason for e in self.events]

    @property
    def steps(self) -> list[str]:
        return [s["step"] for s in self.record["steps"]]


def execute(
    record: Record, ticks: Sequence[Tick], *, settings: HealSettings = S, offset: int = 0
) -> Run:
    run = Run(json.loads(json.dumps(record)))
    for i, tick in enumerate(ticks, start=offset):
        t = advance(run.record, tick.facts(), settings)
        run.persist(i, t.record)
        run.events.extend(t.events)
        if t.actions:
            run.actions.extend(t.actions)
            run.persist(i, mark_done(run.record, now=tick.now, probe=tick.probe))
    return run


def pod_heal(now: float = 0.0, pod: PodFacts = OLD) -> Record:
    return new_record(
        namespace="ns",
        node="alpha",
        scope=Scope.POD,
        pods=[{"name": pod.name, "uid": pod.uid, "ip": pod.ip}],
        trigger=[TRIGGER.as_dict()],
        statefulset="alpha",
        replicas=2,
        now=now,
    )


def node_heal() -> Record:
    return new_record(
        namespace="ns",
        node="alpha",
        scope=Scope.NODE,
        pods=[{"name": p.name, "uid": p.uid, "ip": p.ip} for p in (OLD, PEER)],
        trigger=[TRIGGER.as_dict()],
        statefulset="alpha",
        replicas=2,
        now=0.0,
    )


def ticks(*items: tuple[float, Mapping[str, PodFacts], Mapping[str, Verdict]] | Tick) -> list[Tick]:
    return [i if isinstance(i, Tick) else Tick(i[0], i[1], i[2]) for i in items]


OLD_ONLY = {"gw-0": OLD}
NEW_ONLY = {"gw-0": NEW}
BREACHING = {"gw-0": BREACH}
HEALTHY_IDLE = {"gw-0": IDLE}
HEALTHY_JUDGED = {"gw-0": JUDGED}

RECOVERS = ticks(
    (0, OLD_ONLY, BREACHING),  # isolate
    (1, OLD_ONLY, BREACHING),  # -> Isolated, draining
    Tick(6, OLD_ONLY, BREACHING, {"gw-0": ANSWER}),  # probe
    (7, OLD_ONLY, BREACHING),  # -> ProbeAnswered, kept out
    (20, OLD_ONLY, HEALTHY_IDLE),  # healthy but unjudged and hold not over
    (40, OLD_ONLY, HEALTHY_IDLE),  # hold over -> Restoring weight 10
    (41, OLD_ONLY, HEALTHY_JUDGED),
    (46, OLD_ONLY, HEALTHY_JUDGED),  # weight 50
    (51, OLD_ONLY, HEALTHY_JUDGED),  # weight 100
    (52, OLD_ONLY, HEALTHY_JUDGED),  # done
)
RESPAWNS = ticks(
    (0, OLD_ONLY, BREACHING),
    (1, OLD_ONLY, BREACHING),
    Tick(6, OLD_ONLY, BREACHING, {"gw-0": NO_ANSWER}),
    (17, OLD_ONLY, BREACHING),  # -> ProbeFailed -> Respawning: delete by uid
    (18, {}, {}),  # pod gone
    (25, {"gw-0": NEW_STARTING}, {}),  # replacement not ready yet
    (30, NEW_ONLY, {"gw-0": IDLE}),  # ready -> Respawned -> Restoring weight 10
    (35, NEW_ONLY, {"gw-0": IDLE}),  # weight 50
    (40, NEW_ONLY, {"gw-0": IDLE}),  # weight 100
    (41, NEW_ONLY, {"gw-0": IDLE}),  # done
)

RECOVERS_ACTIONS: list[Action] = [
    SetInRotation("gw-0", False),
    SetWeight("gw-0", 0),
    ProbePod("gw-0", "10.0.0.1", 5000, 10),
    SetInRotation("gw-0", True),
    SetWeight("gw-0", 10),
    SetWeight("gw-0", 50),
    SetWeight("gw-0", 100),
]
RESPAWNS_ACTIONS: list[Action] = [
    SetInRotation("gw-0", False),
    SetWeight("gw-0", 0),
    ProbePod("gw-0", "10.0.0.1", 5000, 10),
    DeletePod("gw-0", "uid-1"),
    SetInRotation("gw-0", True),
    SetWeight("gw-0", 10),
    SetWeight("gw-0", 50),
    SetWeight("gw-0", 100),
]


def test_probe_answers_kept_out_until_healthy_then_restored() -> None:
    run = execute(pod_heal(), RECOVERS)
    assert run.actions == RECOVERS_ACTIONS
    assert run.reasons == [
        EventReason.POD_ISOLATED,
        EventReason.PROBE_ANSWERED,
        EventReason.POD_RESTORED,
    ]
    assert run.record["outcome"] == Outcome.RESTORED
    assert is_terminal(run.record)
    assert run.record["probe"]["gw-0"] == {"ok": True, "answer": {"loop_lag_ms": 3, "tasks": 12}}
    assert run.steps == [
        "Isolating", "Isolated", "Probing", "ProbeAnswered",
        "Restoring", "Restoring", "Restoring", "Done",
    ]  # fmt: skip
    # every action step carries when it started and when it was done
    for entry in run.record["steps"]:
        if entry["step"] in ("Isolating", "Probing", "Restoring"):
            assert entry["startedAt"] and entry["doneAt"], entry
    # the isolation event carries the trigger's values and thresholds
    assert "P99 1200 ms above 800 ms" in run.events[0].message


def test_probe_fails_pod_respawned_then_restored() -> None:
    run = execute(pod_heal(), RESPAWNS)
    assert run.actions == RESPAWNS_ACTIONS
    assert run.reasons == [
        EventReason.POD_ISOLATED,
        EventReason.PROBE_FAILED,
        EventReason.POD_RESPAWNED,
        EventReason.POD_RESTORED,
    ]
    assert run.record["respawned"] == [{"name": "gw-0", "uid": "uid-2", "ip": "10.0.0.2"}]
    assert run.record["probe"]["gw-0"] == {"ok": False, "error": "no answer within 10 s"}
    assert run.record["epoch"]
    assert run.record["outcome"] == Outcome.RESTORED


def test_whole_node_scaled_to_zero_and_back_with_new_epoch() -> None:
    both = {"gw-0": OLD, "gw-1": PEER}
    breach = {"gw-0": BREACH, "gw-1": BREACH}
    probe_fail = {"gw-0": NO_ANSWER, "gw-1": ANSWER}
    run = execute(node_heal(), ticks((0, both, breach), (1, both, breach)))
    run = execute(run.record, [Tick(6, both, breach, probe_fail), Tick(7, both, breach)])
    *probes, scale_down = run.actions
    assert probes == [
        ProbePod("gw-0", "10.0.0.1", 5000, 10),
        ProbePod("gw-1", "10.0.0.9", 5000, 10),
    ]
    assert isinstance(scale_down, ScaleStatefulSet) and scale_down.replicas == 0
    epoch = scale_down.epoch
    stale_epoch = {"gw-0": PodFacts("gw-0", "u3", containers_ready=True, epoch="old")}
    fresh = {
        "gw-0": PodFacts("gw-0", "u4", "10.1.0.1", True, epoch),
        "gw-1": PodFacts("gw-1", "u5", "10.1.0.2", True, epoch),
    }
    idle = {"gw-0": IDLE, "gw-1": IDLE}
    later = execute(
        run.record,
        ticks(
            (8, both, breach),  # old pods still terminating: wait
            (12, {}, {}),  # all gone -> ScalingUp to spec replicas with the same epoch
            (15, stale_epoch, {}),  # a pod without the epoch is not accepted
            (20, fresh, idle),  # all replicas ready with the epoch -> Restoring
        ),
    )
    assert later.actions[0] == ScaleStatefulSet("alpha", 2, epoch)
    assert later.actions[1:] == [
        SetInRotation("gw-0", True),
        SetInRotation("gw-1", True),
        SetWeight("gw-0", 10),
        SetWeight("gw-1", 10),
    ]
    assert EventReason.NODE_RESPAWNED in later.reasons
    assert [p["uid"] for p in later.record["respawned"]] == ["u4", "u5"]


FAILURES = [
    pytest.param(
        RESPAWNS[:5] + ticks((17 + 61, {}, {})),
        "RespawnTimeout",
        id="no-replacement-before-deadline",
    ),
    pytest.param(
        RESPAWNS[:6] + ticks((30, NEW_ONLY, {}), (91, NEW_ONLY, {})),
        "MetricsNeverHealthy",
        id="respawned-pod-never-healthy",
    ),
    pytest.param(
        RESPAWNS[:6] + ticks((30, NEW_ONLY, {"gw-0": BREACH})),
        "ReplacementBreaching",
        id="replacement-breaches-at-once",
    ),
]


@pytest.mark.parametrize(("scenario", "reason"), FAILURES)
def test_heal_fails_and_gives_pods_back(scenario: list[Tick], reason: str) -> None:
    run = execute(pod_heal(), scenario)
    assert run.record["outcome"] == Outcome.FAILED
    assert run.record["outcomeReason"] == reason
    assert run.reasons[-1] is EventReason.HEAL_FAILED
    assert is_terminal(run.record)
    # pods that exist go back into rotation: no capacity stranded by a failed heal
    present = scenario[-1].pods
    assert run.actions[len(run.actions) - 2 * len(present) :] == [
        *(SetInRotation(n, True) for n in present),
        *(SetWeight(n, 100) for n in present),
    ]


def test_probe_answered_but_metrics_never_recover_escalates_to_respawn() -> None:
    scenario = RECOVERS[:4] + ticks((7 + 120, OLD_ONLY, BREACHING))
    run = execute(pod_heal(), scenario)
    assert run.record["step"] == Step.RESPAWNING
    assert run.actions[-1] == DeletePod("gw-0", "uid-1")


def test_positive_evidence_restores_before_the_hold() -> None:
    scenario = RECOVERS[:4] + ticks((9, OLD_ONLY, HEALTHY_JUDGED))
    run = execute(pod_heal(), scenario)
    assert run.record["step"] == Step.RESTORING
    assert run.actions[-2:] == [SetInRotation("gw-0", True), SetWeight("gw-0", 10)]


def test_relapse_while_restoring_isolates_again_and_skips_the_probe() -> None:
    scenario = RECOVERS[:6] + ticks(
        (41, OLD_ONLY, BREACHING),  # breaches again at weight 10 -> Isolating, attempt 2
        (42, OLD_ONLY, BREACHING),
        (48, OLD_ONLY, BREACHING),  # drained: straight to respawn, its probe proved worthless
    )
    run = execute(pod_heal(), scenario)
    assert EventReason.POD_RELAPSED in run.reasons
    assert run.record["attempt"] == 2
    assert run.actions[-3:] == [
        SetInRotation("gw-0", False),
        SetWeight("gw-0", 0),
        DeletePod("gw-0", "uid-1"),
    ]
    assert sum(isinstance(a, ProbePod) for a in run.actions) == 1


def test_relapse_on_the_last_attempt_fails() -> None:
    settings = HealSettings(**{**S.__dict__, "max_attempts": 1})
    scenario = RECOVERS[:6] + ticks((41, OLD_ONLY, BREACHING))
    run = execute(pod_heal(), scenario, settings=settings)
    assert run.record["outcomeReason"] == "Relapsed"
    assert run.actions[-2:] == [SetInRotation("gw-0", True), SetWeight("gw-0", 100)]


@pytest.mark.parametrize(
    "replaced_at",
    [pytest.param(i, id=f"replaced-during-{name}") for i, name in [(1, "isolated"), (3, "probe")]],
)
def test_pod_replaced_by_someone_else_is_awaited_not_deleted(replaced_at: int) -> None:
    scenario = RECOVERS[:replaced_at] + ticks(
        (replaced_at * 3 + 8, {"gw-0": NEW_STARTING}, {}),
        (replaced_at * 3 + 9, NEW_ONLY, {"gw-0": IDLE}),
    )
    run = execute(pod_heal(), scenario)
    assert not any(isinstance(a, DeletePod) for a in run.actions)
    assert EventReason.POD_RESPAWNED in run.reasons
    assert run.record["step"] == Step.RESTORING


# ---------------------------------------------------------------- executor failures


def test_failed_action_is_retried_after_the_backoff_then_heal_fails() -> None:
    rec = pod_heal()
    t = advance(rec, Tick(0, OLD_ONLY, BREACHING).facts(), S)
    assert t.record["stepState"] == StepState.STARTED
    rec = mark_error(t.record, now=0, error="apiserver said 500")
    assert advance(rec, Tick(5, OLD_ONLY).facts(), S).actions == ()  # backing off
    retry = advance(rec, Tick(15, OLD_ONLY).facts(), S)
    assert retry.actions == (SetInRotation("gw-0", False), SetWeight("gw-0", 0))
    rec = mark_error(retry.record, now=15, error="apiserver said 500")
    rec = mark_error(advance(rec, Tick(30, OLD_ONLY).facts(), S).record, now=30, error="500")
    final = advance(rec, Tick(45, OLD_ONLY).facts(), S)
    assert final.record["outcomeReason"] == "ActionFailed"
    assert "apiserver said 500" in final.record["message"] or "500" in final.record["message"]
    assert [e.reason for e in final.events] == [EventReason.HEAL_FAILED]


def test_started_step_without_confirmation_is_reissued_once_patience_runs_out() -> None:
    t = advance(pod_heal(), Tick(0, OLD_ONLY, BREACHING).facts(), S)
    crashed = json.loads(json.dumps(t.record))  # persisted Started, then the operator died
    assert advance(crashed, Tick(14, OLD_ONLY).facts(), S).actions == ()
    again = advance(crashed, Tick(15, OLD_ONLY).facts(), S)
    assert again.actions == t.actions
    assert again.record["stepRetries"] == 1


def test_probe_in_flight_is_given_twice_its_deadline() -> None:
    run = execute(pod_heal(), RECOVERS[:2])
    t = advance(run.record, Tick(6, OLD_ONLY).facts(), S)
    assert isinstance(t.actions[0], ProbePod)
    assert advance(t.record, Tick(6 + 19, OLD_ONLY).facts(), S).actions == ()
    assert advance(t.record, Tick(6 + 20, OLD_ONLY).facts(), S).actions == t.actions


def test_mark_done_and_mark_error_ignore_a_step_that_is_not_started() -> None:
    rec = pod_heal()
    assert mark_done(rec, now=1) == rec
    assert mark_error(rec, now=1, error="x") == rec


# ---------------------------------------------------------------- restart and replay


SCENARIOS = [
    pytest.param(RECOVERS, RECOVERS_ACTIONS, id="recovers"),
    pytest.param(RESPAWNS, RESPAWNS_ACTIONS, id="respawns"),
]


def _resume_points(run: Run) -> list[tuple[int, Record, int]]:
    """Every write a restart could resume from (a Started write is covered separately)."""
    return [s for s in run.snapshots if s[1]["stepState"] != StepState.STARTED]


@pytest.mark.parametrize(("scenario", "expected"), SCENARIOS)
def test_resume_after_restart_at_every_persisted_step(
    scenario: list[Tick], expected: list[Action]
) -> None:
    full = execute(pod_heal(), scenario)
    assert full.actions == expected
    points = _resume_points(full)
    assert len(points) >= len(scenario)
    for index, persisted, executed in points:
        # the restarted operator replays the tick it died in, then carries on
        resumed = execute(persisted, scenario[index:], offset=index)
        assert full.actions[:executed] + resumed.actions == expected, (index, persisted["step"])
        assert resumed.record["outcome"] == full.record["outcome"]


@pytest.mark.parametrize(("scenario", "expected"), SCENARIOS)
def test_replaying_the_same_input_is_deterministic_and_repeats_no_done_step(
    scenario: list[Tick], expected: list[Action]
) -> None:
    full = execute(pod_heal(), scenario)
    for index, persisted, _ in _resume_points(full):
        facts = scenario[index].facts()
        first = advance(persisted, facts, S)
        second = advance(persisted, facts, S)
        assert first == second
        if persisted["stepState"] == StepState.DONE:
            # a step recorded as done is never acted on again: either the machine moved on
            # (a new entry in steps) or it waits without actions
            moved = len(first.record["steps"]) > len(persisted["steps"])
            assert moved or first.actions == (), (index, persisted["step"])


def test_terminal_record_is_inert() -> None:
    run = execute(pod_heal(), RECOVERS)
    t = advance(run.record, Tick(1000, OLD_ONLY, BREACHING).facts(), S)
    assert t.actions == () and t.events == () and t.record == run.record


def test_timestamps_round_trip() -> None:
    rec = pod_heal(now=1234.5)
    assert parse_time(rec["startedAt"]) == 1234.5
    assert rec["id"] == "alpha-1970-01-01T00:20:34.500000Z"


@pytest.mark.parametrize(
    ("code", "probe_at"),
    [
        pytest.param("P99AboveThreshold", 6, id="slow-pod-drains-in-flight-requests"),
        pytest.param("ScrapeFailing", 1, id="hung-pod-has-nothing-to-drain"),
    ],
)
def test_drain_wait_depends_on_the_trigger(code: str, probe_at: float) -> None:
    rec = pod_heal()
    rec["trigger"] = [{**TRIGGER.as_dict(), "code": code}]
    current = execute(rec, ticks((0, OLD_ONLY, BREACHING))).record
    for t in range(1, 7):
        step = advance(current, Tick(t, OLD_ONLY).facts(), S)
        current = step.record
        if step.actions:
            assert isinstance(step.actions[0], ProbePod)
            assert t == probe_at
            return
    pytest.fail("never probed")


def test_status_fragment_round_trip() -> None:
    active = [pod_heal()]
    history = [execute(pod_heal(), RECOVERS).record]
    status = json.loads(json.dumps(heal_status(active, history)))
    assert read_active(status) == active
    assert read_history(status) == history
    assert read_active({}) == [] and read_history(None) == []
