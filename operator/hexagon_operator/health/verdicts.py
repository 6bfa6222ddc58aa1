"""Per-pod verdicts (healthy, breaching, unknown) and whether metrics are available at all.

Why it exists: the single most expensive mistake a self-healer can make is to respawn good
pods because its *own* eyes failed. This module separates the two cases DESIGN.md step 3
names:

* the pipeline fails (Prometheus unreachable, a query failed, no series at all, NaN
  everywhere, or most of a node's targets missing or stale) -> every affected pod is
  UNKNOWN, the ``MetricsAvailable`` condition says why, and no heal starts;
* one pod's own scrape fails (``up == 0`` for ``consecutiveBreaches`` polls, or its ``up``
  sample stale) while its peers are scraped fine -> that pod is BREACHING with
  ``ScrapeFailing``: a hung or dead gateway looks
  exactly like that, and Envoy likewise counts a connect failure against the host.

``up == 0`` is different from missing/stale: it proves Prometheus is up, discovered the
target and tried to scrape it this interval. So a node whose pods all report ``up == 0``
breaches (and may be respawned as a whole), while a node whose series are mostly missing or
stale is unknown. A pod with too little traffic has its P99 and error share *unjudged* (not
a breach, not unknown for the pod): the other signals still count.

Error-rate baseline: the **minimum** error share among the window's earlier judged samples.
A median or mean is contaminated by the incident itself (after half a window of errors the
median *is* the error rate and the breach would clear while the storm rules still hold the
heal back); the minimum stays at the pre-incident level for the whole window and ignores
the breaching samples by construction. The price is sensitivity to one unusually clean
sample, which a 15-point rise threshold absorbs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from hexagon_operator.health.records import iso
from hexagon_operator.health.samples import (
    Observation,
    PipelineStatus,
    PodKey,
    Sample,
    Window,
    is_number,
)
from hexagon_operator.health.settings import HealSettings

NodeKey = tuple[str, str]  # (namespace, node)


class Kind(StrEnum):
    HEALTHY = "healthy"
    BREACHING = "breaching"
    UNKNOWN = "unknown"


class Code(StrEnum):
    """CamelCase reasons; they end up in Events and condition reasons."""

    P99_ABOVE_THRESHOLD = "P99AboveThreshold"
    ERROR_RATE_RISE = "ErrorRateRise"
    SCRAPE_FAILING = "ScrapeFailing"
    LOW_TRAFFIC = "LowTraffic"
    NO_DATA = "NoData"
    NO_BASELINE = "NoBaseline"
    TARGET_MISSING = "TargetMissing"
    # pipeline reasons (MetricsAvailable=False)
    PROMETHEUS_UNREACHABLE = "PrometheusUnreachable"
    QUERY_FAILED = "QueryFailed"
    NO_TARGETS = "NoTargets"
    NO_SAMPLES = "NoSamples"
    TARGETS_MISSING = "TargetsMissingOrStale"
    METRICS_FLOWING = "MetricsFlowing"


@dataclass(frozen=True)
class Finding:
    """One reason with the value and the threshold it was compared to (for Events/history)."""

    code: Code
    signal: str
    message: str
    value: float | None = None
    threshold: float | None = None
    onset: float | None = None  # when the breaching condition began (first sample of it)

    def as_dict(self) -> dict[str, object]:
        return {
            "code": str(self.code),
            "signal": self.signal,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "since": None if self.onset is None else iso(self.onset),
        }


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reasons: tuple[Finding, ...] = ()  # the breaches, or why the pod is unknown
    unjudged: tuple[Finding, ...] = ()  # signals that could not be judged this poll

    @property
    def p99_judged(self) -> bool:
        return all(f.signal != "p99" for f in self.unjudged)

    def codes(self) -> tuple[Code, ...]:
        return tuple(f.code for f in self.reasons)

    @property
    def onset(self) -> float | None:
        """Earliest onset among the breaches: the start of breach-to-isolation latency."""
        times = [f.onset for f in self.reasons if f.onset is not None]
        return min(times) if times else None


@dataclass(frozen=True)
class Availability:
    """Input for a ``MetricsAvailable`` condition: status "True"/"False", reason, message."""

    status: str
    reason: Code
    message: str

    @property
    def available(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True)
class Assessment:
    verdicts: Mapping[PodKey, Verdict]
    nodes: Mapping[NodeKey, Availability]
    pipeline: Availability


def _unavailable(reason: Code, message: str) -> Availability:
    return Availability(status="False", reason=reason, message=message)


def pipeline_availability(observation: Observation, settings: HealSettings) -> Availability:
    """Whole-pipeline check: can this poll be trusted at all?"""
    if observation.status is PipelineStatus.UNREACHABLE:
        return _unavailable(
            Code.PROMETHEUS_UNREACHABLE,
            f"Prometheus did not answer ({observation.detail}); no heal starts until it "
            "does. Check the operator's Prometheus URL and that Prometheus is running.",
        )
    if observation.status is PipelineStatus.QUERY_FAILED:
        which = ", ".join(str(s) for s in observation.failed) or "unknown"
        return _unavailable(
            Code.QUERY_FAILED,
            f"queries for {which} failed ({observation.detail}); no heal starts. "
            "Check Prometheus' logs and the query in the operator's debug log.",
        )
    if observation.status is PipelineStatus.EMPTY or not observation.pods:
        return _unavailable(
            Code.NO_TARGETS,
            "Prometheus has no gateway series; check that its scrape config keeps pods "
            "labelled hexagon.dev/node on the admin port (see health.queries.scrape_config).",
        )
    rates = [s.request_rate for s in observation.pods.values() if s.request_rate is not None]
    busy = [
        s
        for s in observation.pods.values()
        if is_number(s.request_rate) and (s.request_rate or 0.0) >= settings.min_request_rate
    ]
    nan_rates = bool(rates) and not any(is_number(r) for r in rates)
    nan_signals = bool(busy) and all(
        not is_number(s.p99_seconds) and not is_number(s.error_ratio) for s in busy
    )
    if nan_rates or nan_signals:
        return _unavailable(
            Code.NO_SAMPLES,
            "Prometheus returns NaN for every pod although requests flow; check that the "
            "gateways export hexagon_gateway_request_duration_seconds and requests_total.",
        )
    return Availability("True", Code.METRICS_FLOWING, "Prometheus answers for gateway pods")


def _missing_or_stale(sample: Sample | None, settings: HealSettings) -> bool:
    if sample is None or not is_number(sample.up):
        return True
    age = sample.scrape_age_seconds
    return is_number(age) and (age or 0.0) > settings.stale_after_seconds


def _p99(
    series: tuple[Sample, ...], settings: HealSettings
) -> tuple[Finding | None, Finding | None]:
    """(breach, unjudged) for P99: `consecutive_breaches` judged polls in a row above."""
    latest = series[-1]
    threshold = settings.p99_threshold_ms
    if (
        not is_number(latest.request_rate)
        or (latest.request_rate or 0.0) < settings.min_request_rate
    ):
        return None, Finding(
            Code.LOW_TRAFFIC,
            "p99",
            f"{latest.request_rate or 0.0:.3g} req/s is below {settings.min_request_rate:g} "
            "req/s: P99 not judged",
            value=latest.request_rate,
            threshold=settings.min_request_rate,
        )
    if not is_number(latest.p99_ms):
        return None, Finding(Code.NO_DATA, "p99", "no P99 value (no histogram series or NaN)")
    streak = 0
    onset = latest.at
    for sample in reversed(series):
        judged = (
            sample.pipeline_ok
            and is_number(sample.request_rate)
            and (sample.request_rate or 0.0) >= settings.min_request_rate
            and is_number(sample.p99_ms)
        )
        if not judged or (sample.p99_ms or 0.0) <= threshold:
            break
        streak += 1
        onset = sample.at
    if streak < settings.consecutive_breaches:
        return None, None
    value = latest.p99_ms or 0.0
    return (
        Finding(
            Code.P99_ABOVE_THRESHOLD,
            "p99",
            f"P99 {value:.0f} ms above {threshold:.0f} ms for {streak} polls in a row",
            value=value,
            threshold=threshold,
            onset=onset,
        ),
        None,
    )


def _judged_error(sample: Sample, settings: HealSettings) -> float | None:
    if not sample.pipeline_ok or not is_number(sample.error_ratio):
        return None
    if (
        not is_number(sample.request_rate)
        or (sample.request_rate or 0.0) < settings.min_request_rate
    ):
        return None
    return sample.error_ratio


def _errors(
    series: tuple[Sample, ...], settings: HealSettings
) -> tuple[Finding | None, Finding | None]:
    """(breach, unjudged) for the 5xx share against the window's baseline (see module doc)."""
    current = _judged_error(series[-1], settings)
    if current is None:
        return None, Finding(Code.LOW_TRAFFIC, "error_ratio", "too little traffic or no 5xx share")
    earlier = [e for e in (_judged_error(s, settings) for s in series[:-1]) if e is not None]
    if not earlier:
        return None, Finding(Code.NO_BASELINE, "error_ratio", "no earlier sample in the window")
    baseline = min(earlier)
    rise = (current - baseline) * 100.0
    if rise < settings.error_rate_rise_percent:
        return None, None
    onset = series[-1].at
    for sample in reversed(series[:-1]):
        e = _judged_error(sample, settings)
        if e is None or (e - baseline) * 100.0 < settings.error_rate_rise_percent:
            break
        onset = sample.at
    return (
        Finding(
            Code.ERROR_RATE_RISE,
            "error_ratio",
            f"5xx share {current * 100:.1f}% rose {rise:.1f} points above the window's "
            f"baseline {baseline * 100:.1f}% (threshold {settings.error_rate_rise_percent:g})",
            value=rise,
            threshold=settings.error_rate_rise_percent,
            onset=onset,
        ),
        None,
    )


def pod_verdict(series: tuple[Sample, ...], settings: HealSettings, *, peers_ok: int) -> Verdict:
    """Judge one pod whose pipeline (Prometheus and its node's scrapes) is known to work."""
    if not series or not is_number(series[-1].up):
        return Verdict(
            Kind.UNKNOWN,
            (Finding(Code.TARGET_MISSING, "up", "Prometheus has no target for this pod (yet)"),),
        )
    latest = series[-1]
    if (latest.up or 0.0) < 1.0:
        # One failed scrape can be a GC pause or a slow node; like P99, it takes
        # consecutiveBreaches failed polls in a row to call the pod hung.
        streak, onset = 0, latest.at
        for sample in reversed(series):
            if not sample.pipeline_ok or not is_number(sample.up) or (sample.up or 0.0) >= 1.0:
                break
            streak, onset = streak + 1, sample.at
        needed = settings.consecutive_breaches
        finding = Finding(
            Code.SCRAPE_FAILING,
            "up",
            f"Prometheus cannot scrape the pod (up == 0, {streak} of {needed} polls) while "
            f"{peers_ok} peer(s) are scraped fine: the gateway looks hung or dead",
            value=latest.up,
            threshold=1.0,
            onset=onset,
        )
        # Not yet breaching, but not healthy either: unknown keeps it from being restored.
        return Verdict(Kind.BREACHING if streak >= needed else Kind.UNKNOWN, (finding,))
    if _missing_or_stale(latest, settings):
        age = latest.scrape_age_seconds or 0.0
        return Verdict(
            Kind.BREACHING,
            (
                Finding(
                    Code.SCRAPE_FAILING,
                    "scrape_age",
                    f"last scrape {age:.0f} s ago (stale after {settings.stale_after_seconds:g}"
                    f" s) while {peers_ok} peer(s) are scraped fine",
                    value=age,
                    threshold=settings.stale_after_seconds,
                    onset=latest.at,
                ),
            ),
        )
    breaches: list[Finding] = []
    unjudged: list[Finding] = []
    for breach, note in (_p99(series, settings), _errors(series, settings)):
        if breach is not None:
            breaches.append(breach)
        if note is not None:
            unjudged.append(note)
    kind = Kind.BREACHING if breaches else Kind.HEALTHY
    return Verdict(kind, tuple(breaches), tuple(unjudged))


def assess(
    window: Window,
    observation: Observation,
    settings: HealSettings,
    *,
    pods: Iterable[PodKey] | None = None,
) -> Assessment:
    """Verdicts for ``pods`` (default: every pod in the window) after ``record``-ing the poll.

    Order of checks: whole pipeline, then the share of all targets missing/stale, then per
    node the share of its targets missing/stale, then each pod on its own.
    """
    keys = sorted(set(pods) if pods is not None else set(window))
    nodes: dict[NodeKey, list[PodKey]] = {}
    for key in keys:
        nodes.setdefault((key.namespace, key.node), []).append(key)
    pipeline = pipeline_availability(observation, settings)
    if pipeline.available and keys:
        gone = [k for k in keys if _missing_or_stale(_latest(window, k), settings)]
        if len(gone) * 2 > len(keys):
            pipeline = _unavailable(
                Code.TARGETS_MISSING,
                f"{len(gone)} of {len(keys)} gateway pods have no fresh scrape "
                f"(e.g. {_names(gone)}); Prometheus is not scraping them - check its targets page",
            )
    verdicts: dict[PodKey, Verdict] = {}
    availability: dict[NodeKey, Availability] = {}
    for node, members in nodes.items():
        node_state = pipeline
        if pipeline.available:
            gone = [k for k in members if _missing_or_stale(_latest(window, k), settings)]
            if len(gone) * 2 > len(members):
                node_state = _unavailable(
                    Code.TARGETS_MISSING,
                    f"{len(gone)} of {len(members)} pods of node {node[1]} have no fresh "
                    f"scrape ({_names(gone)}); check Prometheus' targets and network policy",
                )
        availability[node] = node_state
        if not node_state.available:
            unknown = Verdict(
                Kind.UNKNOWN, (Finding(node_state.reason, "pipeline", node_state.message),)
            )
            verdicts.update(dict.fromkeys(members, unknown))
            continue
        for key in members:
            peers_ok = sum(
                1
                for other in members
                if other != key and not _scrape_failing(_latest(window, other), settings)
            )
            verdicts[key] = pod_verdict(window.get(key, ()), settings, peers_ok=peers_ok)
    return Assessment(verdicts=verdicts, nodes=availability, pipeline=pipeline)


def _latest(window: Window, key: PodKey) -> Sample | None:
    series = window.get(key, ())
    return series[-1] if series else None


def _scrape_failing(sample: Sample | None, settings: HealSettings) -> bool:
    return _missing_or_stale(sample, settings) or (sample is not None and (sample.up or 0.0) < 1)


def _names(keys: list[PodKey], limit: int = 3) -> str:
    shown = ", ".join(k.pod for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
