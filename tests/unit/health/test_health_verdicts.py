"""Verdict tables: breach detection over a window of polls, in virtual time.

Each case is a sequence of polls (one dict per poll: pod -> readings, or a pipeline status)
fed through ``samples.record`` and ``verdicts.assess`` exactly as the operator does; the
clock is the poll index times the poll interval, so a 60 s window is tested exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hexagon_operator.health.samples import (
    Observation,
    PipelineStatus,
    PodKey,
    PodSignals,
    Signal,
    Window,
    record,
)
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.verdicts import Assessment, Code, Kind, assess

NAN = math.nan
A0 = PodKey("ns", "alpha", "alpha-0")
A1 = PodKey("ns", "alpha", "alpha-1")
A2 = PodKey("ns", "alpha", "alpha-2")
B0 = PodKey("ns", "beta", "beta-0")
PODS = (A0, A1, A2, B0)
INTERVAL = 5.0


def ok(
    p99_ms: float | None = 100.0,
    err: float | None = 0.0,
    rps: float | None = 10.0,
    up: float | None = 1.0,
    age: float | None = 1.0,
) -> PodSignals:
    return PodSignals(
        p99_seconds=None if p99_ms is None else p99_ms / 1000.0,
        error_ratio=err,
        request_rate=rps,
        up=up,
        scrape_age_seconds=age,
    )


HEALTHY = ok()
SLOW = ok(p99_ms=1200.0)
Poll = Mapping[PodKey, PodSignals] | PipelineStatus


def run(
    polls: Sequence[Poll],
    settings: HealSettings | None = None,
    pods: Sequence[PodKey] = PODS,
) -> Assessment:
    s = settings or HealSettings()
    window: Window = {}
    assessment: Assessment | None = None
    for i, poll in enumerate(polls):
        at = 1000.0 + i * INTERVAL
        if isinstance(poll, PipelineStatus):
            failed = (Signal.P99,) if poll is PipelineStatus.QUERY_FAILED else ()
            obs = Observation(at=at, status=poll, failed=failed, detail="boom")
        else:
            full = {key: poll.get(key, HEALTHY) for key in pods}
            full.update({k: v for k, v in poll.items() if k not in pods})
            obs = Observation(at=at, status=PipelineStatus.OK, pods=full)
        window = record(window, obs, pods=frozenset(pods), window_seconds=s.window_seconds)
        assessment = assess(window, obs, s, pods=pods)
    assert assessment is not None
    return assessment


def only(**per_pod: PodSignals) -> dict[PodKey, PodSignals]:
    keys = {"a0": A0, "a1": A1, "a2": A2, "b0": B0}
    return {keys[name]: value for name, value in per_pod.items()}


P99_CASES = [
    pytest.param(
        [only(a0=SLOW)] * 3,
        Kind.BREACHING,
        (Code.P99_ABOVE_THRESHOLD,),
        id="p99-breach-three-polls",
    ),
    pytest.param([only(a0=SLOW)] * 2, Kind.HEALTHY, (), id="p99-two-polls-not-yet"),
    pytest.param(
        [only(a0=SLOW), only(a0=HEALTHY), only(a0=SLOW), only(a0=SLOW)],
        Kind.HEALTHY,
        (),
        id="p99-streak-broken-by-good-poll",
    ),
    pytest.param(
        [only(a0=SLOW), only(a0=SLOW), PipelineStatus.UNREACHABLE, only(a0=SLOW)],
        Kind.HEALTHY,
        (),
        id="p99-streak-broken-by-outage",
    ),
    pytest.param(
        [only(a0=SLOW), only(a0=ok(p99_ms=1200, rps=0.1)), only(a0=SLOW), only(a0=SLOW)],
        Kind.HEALTHY,
        (),
        id="p99-streak-broken-by-low-traffic-poll",
    ),
    pytest.param(
        [only(a0=ok(p99_ms=800.0))] * 5, Kind.HEALTHY, (), id="p99-equal-threshold-is-not-above"
    ),
    pytest.param(
        [only(a0=ok(p99_ms=800.5))] * 3,
        Kind.BREACHING,
        (Code.P99_ABOVE_THRESHOLD,),
        id="p99-just-above",
    ),
    pytest.param(
        [only(a0=ok(p99_ms=math.inf))] * 3,
        Kind.BREACHING,
        (Code.P99_ABOVE_THRESHOLD,),
        id="p99-inf-top-bucket-breaches",
    ),
    pytest.param(
        [only(a0=ok(p99_ms=5000, rps=0.2))] * 5, Kind.HEALTHY, (), id="p99-low-traffic-unjudged"
    ),
    pytest.param([only(a0=ok(p99_ms=NAN))] * 5, Kind.HEALTHY, (), id="p99-nan-unjudged"),
    pytest.param([only(a0=ok(p99_ms=None))] * 5, Kind.HEALTHY, (), id="p99-missing-unjudged"),
    pytest.param(
        [only(a0=SLOW)] * 20,
        Kind.BREACHING,
        (Code.P99_ABOVE_THRESHOLD,),
        id="p99-long-breach-still-breaching",
    ),
]


@pytest.mark.parametrize(("polls", "kind", "codes"), P99_CASES)
def test_p99_breach(polls: list[Poll], kind: Kind, codes: tuple[Code, ...]) -> None:
    verdict = run(polls).verdicts[A0]
    assert verdict.kind is kind
    assert verdict.codes() == codes
    assert run(polls).verdicts[A1].kind is Kind.HEALTHY


@pytest.mark.parametrize(
    ("consecutive", "polls", "kind"),
    [
        pytest.param(1, 1, Kind.BREACHING, id="one-poll-setting"),
        pytest.param(5, 4, Kind.HEALTHY, id="five-needed-four-seen"),
        pytest.param(5, 5, Kind.BREACHING, id="five-needed-five-seen"),
    ],
)
def test_consecutive_breaches_setting(consecutive: int, polls: int, kind: Kind) -> None:
    s = HealSettings(consecutive_breaches=consecutive)
    assert run([only(a0=SLOW)] * polls, s).verdicts[A0].kind is kind


def test_short_window_still_sees_the_streak_via_min_keep() -> None:
    # 3 polls 5 s apart span 10 s; a 6 s window would drop them without min_keep
    s = HealSettings(window_seconds=6.0)
    window: Window = {}
    for i in range(3):
        obs = Observation(at=i * INTERVAL, status=PipelineStatus.OK, pods={A0: SLOW})
        window = record(window, obs, window_seconds=6.0, min_keep=3)
    assert assess(window, obs, s, pods=[A0]).verdicts[A0].kind is Kind.BREACHING


ERROR_CASES = [
    pytest.param(
        [only(a0=ok(err=0.01))] * 3 + [only(a0=ok(err=0.16))],
        Kind.BREACHING,
        id="rise-15-points-breaches",
    ),
    pytest.param(
        [only(a0=ok(err=0.01))] * 3 + [only(a0=ok(err=0.15))],
        Kind.HEALTHY,
        id="rise-14-points-healthy",
    ),
    pytest.param([only(a0=ok(err=0.30))] * 5, Kind.HEALTHY, id="steady-high-error-is-baseline"),
    pytest.param(
        [only(a0=ok(err=0.0))] + [only(a0=ok(err=0.5))] * 8,
        Kind.BREACHING,
        id="min-baseline-survives-long-incident",
    ),
    pytest.param(
        [only(a0=ok(err=0.0))] + [only(a0=ok(err=0.5))] * 13,
        Kind.HEALTHY,
        id="clean-sample-left-the-window",
    ),
    pytest.param([only(a0=ok(err=0.5))], Kind.HEALTHY, id="no-baseline-first-poll"),
    pytest.param(
        [only(a0=ok(err=0.0, rps=0.1))] * 2 + [only(a0=ok(err=0.9))],
        Kind.HEALTHY,
        id="low-traffic-samples-not-baseline",
    ),
    pytest.param(
        [only(a0=ok(err=0.0))] * 2 + [only(a0=ok(err=0.9, rps=0.1))],
        Kind.HEALTHY,
        id="low-traffic-now-unjudged",
    ),
    pytest.param(
        [only(a0=ok(err=0.0))] * 2 + [only(a0=ok(err=NAN))], Kind.HEALTHY, id="nan-error-unjudged"
    ),
    pytest.param(
        [only(a0=ok(err=0.0)), PipelineStatus.UNREACHABLE, only(a0=ok(err=0.2))],
        Kind.BREACHING,
        id="outage-gap-not-in-baseline",
    ),
]


@pytest.mark.parametrize(("polls", "kind"), ERROR_CASES)
def test_error_rate_rise(polls: list[Poll], kind: Kind) -> None:
    verdict = run(polls).verdicts[A0]
    assert verdict.kind is kind
    if kind is Kind.BREACHING:
        (finding,) = verdict.reasons
        assert finding.code is Code.ERROR_RATE_RISE
        assert finding.threshold == 15.0
        assert finding.value is not None and finding.value >= 15.0


def test_breach_finding_carries_value_and_threshold() -> None:
    (finding,) = run([only(a0=SLOW)] * 3).verdicts[A0].reasons
    assert (finding.value, finding.threshold) == (1200.0, 800.0)
    assert "1200 ms above 800 ms for 3 polls" in finding.message


SCRAPE_CASES = [
    # one pod's own scrape fails while peers are fine -> it is the pod
    pytest.param(
        only(a0=ok(up=0.0)),
        {A0: Kind.BREACHING},
        Code.SCRAPE_FAILING,
        "True",
        id="one-pod-up-0-breaches",
    ),
    pytest.param(
        only(a0=ok(age=120.0)),
        {A0: Kind.BREACHING},
        Code.SCRAPE_FAILING,
        "True",
        id="one-pod-stale-breaches",
    ),
    pytest.param(
        only(a0=ok(up=None, age=None)),
        {A0: Kind.UNKNOWN},
        Code.TARGET_MISSING,
        "True",
        id="one-pod-missing-unknown",
    ),
    # most of a node's targets missing or stale -> the pipeline, for that node only
    pytest.param(
        only(a0=ok(age=120.0), a1=ok(age=120.0)),
        {A0: Kind.UNKNOWN, A1: Kind.UNKNOWN, A2: Kind.UNKNOWN, B0: Kind.HEALTHY},
        Code.TARGETS_MISSING,
        "False",
        id="node-mostly-stale-unknown",
    ),
    pytest.param(
        only(a0=ok(up=None), a1=ok(up=None)),
        {A2: Kind.UNKNOWN, B0: Kind.HEALTHY},
        Code.TARGETS_MISSING,
        "False",
        id="node-mostly-missing-unknown",
    ),
    # up == 0 proves Prometheus scraped and the pods failed: a hung node breaches
    pytest.param(
        only(a0=ok(up=0.0), a1=ok(up=0.0), a2=ok(up=0.0)),
        {A0: Kind.BREACHING, A2: Kind.BREACHING, B0: Kind.HEALTHY},
        Code.SCRAPE_FAILING,
        "True",
        id="whole-node-up-0-breaches",
    ),
    # single-replica node: its only pod up == 0 while other nodes are fine -> breaching
    pytest.param(
        only(b0=ok(up=0.0)),
        {B0: Kind.BREACHING},
        Code.SCRAPE_FAILING,
        "True",
        id="single-replica-up-0-breaches",
    ),
    pytest.param(
        only(b0=ok(age=300.0)),
        {B0: Kind.UNKNOWN},
        Code.TARGETS_MISSING,
        "False",
        id="single-replica-stale-unknown",
    ),
]


@pytest.mark.parametrize(("poll", "kinds", "code", "node_status"), SCRAPE_CASES)
def test_own_scrape_failure_versus_pipeline(
    poll: dict[PodKey, PodSignals], kinds: dict[PodKey, Kind], code: Code, node_status: str
) -> None:
    assessment = run([poll] * 3)
    for key, kind in kinds.items():
        assert assessment.verdicts[key].kind is kind, key
    first = next(iter(kinds))
    assert code in assessment.verdicts[first].codes()
    assert assessment.nodes[(first.namespace, first.node)].status == node_status
    assert assessment.pipeline.available


def test_scrape_failing_message_mentions_peers() -> None:
    (finding,) = run([only(a0=ok(up=0.0))] * 3).verdicts[A0].reasons
    assert "2 peer(s) are scraped fine" in finding.message
    assert (finding.value, finding.threshold) == (0.0, 1.0)


DOWN = only(a0=ok(up=0.0))


@pytest.mark.parametrize(
    ("polls", "kind"),
    [
        pytest.param([DOWN], Kind.UNKNOWN, id="one-failed-scrape-not-yet"),
        pytest.param([DOWN] * 2, Kind.UNKNOWN, id="two-failed-scrapes-not-yet"),
        pytest.param([DOWN] * 3, Kind.BREACHING, id="three-in-a-row-breach"),
        pytest.param([DOWN, DOWN, only(), DOWN], Kind.UNKNOWN, id="streak-broken-by-good-scrape"),
        pytest.param(
            [DOWN, DOWN, PipelineStatus.UNREACHABLE, DOWN],
            Kind.UNKNOWN,
            id="streak-broken-by-outage",
        ),
        pytest.param([DOWN] * 3 + [only()], Kind.HEALTHY, id="scrapes-again"),
    ],
)
def test_scrape_failing_needs_consecutive_polls(polls: list[Poll], kind: Kind) -> None:
    verdict = run(polls).verdicts[A0]
    assert verdict.kind is kind
    if kind is not Kind.HEALTHY:
        assert verdict.codes() == (Code.SCRAPE_FAILING,)


@pytest.mark.parametrize(
    ("polls", "onset_poll"),
    [
        pytest.param([only()] * 2 + [only(a0=SLOW)] * 4, 2, id="p99-onset-first-slow-poll"),
        pytest.param([only()] * 3 + [DOWN] * 3, 3, id="scrape-onset-first-failed-poll"),
        pytest.param([only(a0=ok(err=0.0))] * 2 + [only(a0=ok(err=0.4))] * 2, 2, id="error-onset"),
    ],
)
def test_breach_onset_is_the_first_sample_of_the_breach(polls: list[Poll], onset_poll: int) -> None:
    verdict = run(polls).verdicts[A0]
    assert verdict.kind is Kind.BREACHING
    assert verdict.onset == 1000.0 + onset_poll * INTERVAL
    assert verdict.reasons[0].as_dict()["since"]


PIPELINE_CASES = [
    pytest.param(
        [PipelineStatus.UNREACHABLE], Code.PROMETHEUS_UNREACHABLE, id="prometheus-unreachable"
    ),
    pytest.param([PipelineStatus.QUERY_FAILED], Code.QUERY_FAILED, id="query-failed"),
    pytest.param([PipelineStatus.EMPTY], Code.NO_TARGETS, id="empty"),
    pytest.param(
        [only(a0=SLOW)] * 2 + [PipelineStatus.UNREACHABLE],
        Code.PROMETHEUS_UNREACHABLE,
        id="outage-mid-breach",
    ),
    pytest.param(
        [{k: ok(p99_ms=NAN, err=NAN, rps=NAN) for k in PODS}], Code.NO_SAMPLES, id="nan-everywhere"
    ),
    pytest.param(
        [{k: ok(p99_ms=NAN, err=NAN, rps=50.0) for k in PODS}],
        Code.NO_SAMPLES,
        id="traffic-but-no-latency-or-errors",
    ),
    pytest.param(
        [{k: ok(age=600.0) for k in (A0, A1, B0)}],
        Code.TARGETS_MISSING,
        id="most-targets-stale-fleet-wide",
    ),
]


@pytest.mark.parametrize(("polls", "code"), PIPELINE_CASES)
def test_pipeline_failure_makes_every_pod_unknown(polls: list[Poll], code: Code) -> None:
    assessment = run(polls)
    assert not assessment.pipeline.available
    assert assessment.pipeline.reason is code
    assert assessment.pipeline.message
    assert {v.kind for v in assessment.verdicts.values()} == {Kind.UNKNOWN}
    assert {a.reason for a in assessment.nodes.values()} == {code}


def test_idle_fleet_is_available_and_healthy() -> None:
    idle = {k: ok(p99_ms=NAN, err=NAN, rps=0.0) for k in PODS}
    assessment = run([idle] * 3)
    assert assessment.pipeline.available
    assert {v.kind for v in assessment.verdicts.values()} == {Kind.HEALTHY}
    assert not assessment.verdicts[A0].p99_judged


def test_unreachable_message_names_the_detail() -> None:
    assessment = run([PipelineStatus.UNREACHABLE])
    assert "boom" in assessment.pipeline.message
    assert "no heal starts" in assessment.pipeline.message


def test_unexpected_pod_in_prometheus_is_ignored() -> None:
    stray = PodKey("ns", "alpha", "alpha-9")
    assessment = run([{stray: SLOW}] * 3)
    assert stray not in assessment.verdicts


def test_findings_serialise_for_history() -> None:
    (finding,) = run([only(a0=SLOW)] * 3).verdicts[A0].reasons
    data: dict[str, Any] = finding.as_dict()
    assert data["code"] == "P99AboveThreshold" and data["signal"] == "p99"
