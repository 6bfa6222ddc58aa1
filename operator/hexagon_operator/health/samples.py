"""Typed observations and the per-pod sliding window of samples.

Why a module of its own: ``source`` builds :class:`Observation` snapshots from Prometheus and
``verdicts`` judges windows of :class:`Sample`; both need the same vocabulary, and keeping it
here (pure, no I/O) lets the decision code be tested without a Prometheus.

The window is an immutable mapping from pod to a tuple of samples. Every poll appends one
sample per known pod; a poll whose pipeline failed appends a *gap* sample (``pipeline_ok``
False) so that "N consecutive polls" really means consecutive polls, not N good polls spread
over an outage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class PodKey(NamedTuple):
    """Identity of one gateway pod as Prometheus labels it (namespace, hexagon_node, pod)."""

    namespace: str
    node: str
    pod: str


class Signal(StrEnum):
    """One PromQL query per signal per poll, for every watched pod at once."""

    P99 = "p99"
    ERROR_RATIO = "error_ratio"
    REQUEST_RATE = "request_rate"
    UP = "up"
    SCRAPE_AGE = "scrape_age"


class PipelineStatus(StrEnum):
    """Health of the metrics pipeline as seen by one poll (not of the pods)."""

    OK = "ok"
    UNREACHABLE = "prometheus-unreachable"
    QUERY_FAILED = "query-failed"
    EMPTY = "empty"


@dataclass(frozen=True)
class PodSignals:
    """The values of one poll for one pod; ``None`` means Prometheus returned no series."""

    p99_seconds: float | None = None
    error_ratio: float | None = None
    request_rate: float | None = None
    up: float | None = None
    scrape_age_seconds: float | None = None


@dataclass(frozen=True)
class Observation:
    """One poll: the pipeline status and, when it worked, the values per pod.

    ``failed`` names the signals whose query failed (empty unless QUERY_FAILED); ``detail``
    is the error text a person can act on (URL, HTTP status, exception message).
    """

    at: float
    status: PipelineStatus
    pods: Mapping[PodKey, PodSignals] = field(default_factory=dict)
    failed: tuple[Signal, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class Sample:
    """One pod's values at one poll, in the units the thresholds use (ms, ratios 0..1)."""

    at: float
    pipeline_ok: bool
    p99_ms: float | None = None
    error_ratio: float | None = None
    request_rate: float | None = None
    up: float | None = None
    scrape_age_seconds: float | None = None


Window = Mapping[PodKey, tuple[Sample, ...]]


def is_number(value: float | None) -> bool:
    """True for a real reading; ``None`` (no series) and NaN (0/0 in PromQL) are not."""
    return value is not None and not math.isnan(value)


def sample_from(signals: PodSignals | None, *, at: float, pipeline_ok: bool) -> Sample:
    """Convert Prometheus units (seconds) to threshold units (milliseconds)."""
    if signals is None or not pipeline_ok:
        return Sample(at=at, pipeline_ok=pipeline_ok)
    p99 = signals.p99_seconds
    return Sample(
        at=at,
        pipeline_ok=True,
        p99_ms=None if p99 is None else p99 * 1000.0,
        error_ratio=signals.error_ratio,
        request_rate=signals.request_rate,
        up=signals.up,
        scrape_age_seconds=signals.scrape_age_seconds,
    )


def record(
    window: Window,
    observation: Observation,
    *,
    pods: frozenset[PodKey] | None = None,
    window_seconds: float,
    min_keep: int = 1,
) -> dict[PodKey, tuple[Sample, ...]]:
    """Append this poll to every pod's window and drop samples older than the window.

    ``pods`` are the pods Kubernetes says exist (so a pod whose series vanished still gets a
    sample, an empty one); by default every pod in the window or the observation. A pod not
    in ``pods`` is forgotten. StatefulSet pods keep their names across respawns, so whoever
    sees a pod's uid change calls :func:`forget` to keep the old pod's samples off the new one.

    ``min_keep`` keeps at least that many newest samples even when older than the window,
    so a window shorter than ``consecutiveBreaches`` poll intervals can still see a streak.
    """
    ok = observation.status is PipelineStatus.OK
    keys = pods if pods is not None else frozenset(window) | frozenset(observation.pods)
    horizon = observation.at - window_seconds
    out: dict[PodKey, tuple[Sample, ...]] = {}
    for key in keys:
        new = sample_from(observation.pods.get(key), at=observation.at, pipeline_ok=ok)
        series = (*window.get(key, ()), new)
        keep_from = 0
        while keep_from < len(series) - min_keep and series[keep_from].at < horizon:
            keep_from += 1
        out[key] = series[keep_from:]
    return out


def forget(window: Window, keys: frozenset[PodKey]) -> dict[PodKey, tuple[Sample, ...]]:
    """Drop pods' histories, e.g. after a respawn: the new pod must not inherit old samples."""
    return {key: series for key, series in window.items() if key not in keys}
