"""The operator's own metrics about healing, rendered in the Prometheus text format.

Why hand-rolled: ``prometheus_client`` is not among the locked dependencies, and the few
series the issue asks for (heals by outcome, step durations, breach-onset-to-isolation
latency, Prometheus poll errors) fit in a page. The numbers come from the heal records
themselves (their per-step timestamps), so they are exactly what ``status.healHistory``
shows. Whoever serves ``/metrics`` calls :meth:`HealMetrics.render`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from hexagon_operator.health.records import parse_time
from hexagon_operator.health.samples import Observation, PipelineStatus

BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
PREFIX = "hexagon_operator"


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        index = next((i for i, le in enumerate(BUCKETS) if value <= le), len(BUCKETS))
        self.counts[index] += 1
        self.total += value
        self.n += 1


@dataclass
class HealMetrics:
    heals: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, reason)
    poll_errors: Counter[str] = field(default_factory=Counter)
    steps: dict[str, Histogram] = field(default_factory=dict)
    isolation: Histogram = field(default_factory=Histogram)
    respawn: Histogram = field(default_factory=Histogram)
    _seen: set[str] = field(default_factory=set)

    def observe_poll(self, observation: Observation) -> None:
        if observation.status is not PipelineStatus.OK:
            self.poll_errors[str(observation.status)] += 1

    def observe_finished(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Count each finished record once (by id), however often history is re-read."""
        for rec in records:
            rid = str(rec.get("id"))
            if rec.get("outcome") is None or rid in self._seen:
                continue
            self._seen.add(rid)
            self.heals[(str(rec["outcome"]), str(rec.get("outcomeReason")))] += 1
            for step, seconds in step_durations(rec):
                self.steps.setdefault(step, Histogram()).observe(seconds)
            isolated = isolation_seconds(rec)
            if isolated is not None:
                self.isolation.observe(isolated)
            respawned = respawn_seconds(rec)
            if respawned is not None:
                self.respawn.observe(respawned)

    def render(self) -> str:
        out: list[str] = []
        name = f"{PREFIX}_heals_total"
        out += [f"# HELP {name} Finished heals by outcome and reason.", f"# TYPE {name} counter"]
        for (outcome, reason), count in sorted(self.heals.items()):
            out.append(f'{name}{{outcome="{outcome}",reason="{reason}"}} {count}')
        name = f"{PREFIX}_prometheus_poll_errors_total"
        out += [
            f"# HELP {name} Polls of Prometheus that failed, by status.",
            f"# TYPE {name} counter",
        ]
        for status, count in sorted(self.poll_errors.items()):
            out.append(f'{name}{{status="{status}"}} {count}')
        name = f"{PREFIX}_heal_step_seconds"
        out += [f"# HELP {name} Time spent in each heal step.", f"# TYPE {name} histogram"]
        for step, hist in sorted(self.steps.items()):
            out += _histogram(name, hist, f'step="{step}"')
        for metric, hist, text in (
            ("breach_to_isolation_seconds", self.isolation, "Breach onset to out of rotation."),
            ("decision_to_restored_seconds", self.respawn, "Heal start to respawned pod back."),
        ):
            full = f"{PREFIX}_{metric}"
            out += [f"# HELP {full} {text}", f"# TYPE {full} histogram"]
            out += _histogram(full, hist, "")
        return "\n".join(out) + "\n"


def _histogram(name: str, hist: Histogram, labels: str) -> list[str]:
    sep = "," if labels else ""
    lines = []
    cumulative = 0
    for le, count in zip((*map(str, BUCKETS), "+Inf"), hist.counts, strict=True):
        cumulative += count
        lines.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}')
    braces = f"{{{labels}}}" if labels else ""
    lines += [f"{name}_sum{braces} {hist.total}", f"{name}_count{braces} {hist.n}"]
    return lines


def step_durations(rec: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(step, seconds) for every step entry that was left (entered -> next entered)."""
    entries = rec.get("steps") or []
    out = []
    for current, following in pairwise(entries):
        start, end = parse_time(current.get("enteredAt")), parse_time(following.get("enteredAt"))
        if start is not None and end is not None:
            out.append((str(current["step"]), max(0.0, end - start)))
    return out


def isolation_seconds(rec: Mapping[str, Any]) -> float | None:
    """Earliest breach onset in the trigger -> the first isolation confirmed done."""
    onsets = [parse_time(t.get("since")) for t in rec.get("trigger") or []]
    known = [t for t in onsets if t is not None]
    done = next(
        (parse_time(s.get("doneAt")) for s in rec.get("steps") or [] if s["step"] == "Isolating"),
        None,
    )
    if not known or done is None:
        return None
    return max(0.0, done - min(known))


def respawn_seconds(rec: Mapping[str, Any]) -> float | None:
    """Heal start -> the respawned pod's first Restoring step done (back in rotation)."""
    if not rec.get("respawned"):
        return None
    start = parse_time(rec.get("startedAt"))
    steps = rec.get("steps") or []
    seen_respawn = False
    for s in steps:
        seen_respawn = seen_respawn or s["step"] == "Respawned"
        if seen_respawn and s["step"] == "Restoring" and s.get("doneAt"):
            end = parse_time(s["doneAt"])
            return None if start is None or end is None else max(0.0, end - start)
    return None
