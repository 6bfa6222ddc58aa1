"""Prometheus text exposition (format 0.0.4), written here rather than with prometheus_client.

The metric names are the contract with the operator, which computes each pod's P99 from
`hexagon_gateway_request_duration_seconds` and its 5xx rate from
`hexagon_gateway_requests_total{code}`. The recording side is a few dict updates per request
(the hot path); all text formatting happens at scrape time. No aiohttp here.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

# Roughly x1.5 steps from 1 ms to 10 s, with 0.8 s present because the operator's default
# P99 threshold is 800 ms and a bucket edge there makes that comparison exact.
BUCKETS: tuple[float, ...] = (
    0.001, 0.0015, 0.0025, 0.004, 0.006, 0.01, 0.015, 0.025, 0.04, 0.06,
    0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0, 1.5, 2.5, 4.0, 6.0, 10.0,
)  # fmt: skip

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0


class Metrics:
    """All counters of one gateway process."""

    def __init__(self, *, const_labels: Mapping[str, str] | None = None) -> None:
        self.const_labels = dict(const_labels or {})
        self.requests: dict[tuple[str, str, str], int] = {}  # (code, route, upstream)
        self.durations: dict[str, _Histogram] = {}  # by route
        self.in_flight = 0
        self.reloads = {"ok": 0, "failed": 0}
        self.upstream_errors: dict[tuple[str, str], int] = {}  # (upstream, kind)
        self.retries: dict[str, int] = {}
        self.handoffs = 0  # connections the fast front end passed to aiohttp's server
        # Gauges computed at scrape time from live state (breakers, ejections, pools).
        self.collectors: list[Callable[[], Iterable[tuple[str, str, str, Labels, Labels, float]]]]
        self.collectors = []

    def observe(self, *, route: str, upstream: str, code: int, seconds: float) -> None:
        key = (str(code), route, upstream)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.durations.get(route)
        if hist is None:
            hist = self.durations[route] = _Histogram()
        hist.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        hist.total += seconds
        hist.count += 1

    def count_upstream_error(self, upstream: str, kind: str) -> None:
        key = (upstream, kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def count_retry(self, upstream: str) -> None:
        self.retries[upstream] = self.retries.get(upstream, 0) + 1

    # -- exposition --------------------------------------------------------------------
    def _labels(self, names: Labels, values: Labels) -> str:
        pairs = list(self.const_labels.items()) + list(zip(names, values, strict=True))
        if not pairs:
            return ""
        return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        name = "hexagon_gateway_request_duration_seconds"
        family(name, "histogram", "Time from request received to response completed.")
        for route, hist in sorted(self.durations.items()):
            cumulative = 0
            for edge, n in zip((*BUCKETS, float("inf")), hist.counts, strict=True):
                cumulative += n
                labels = self._labels(("route", "le"), (route, _fmt(edge)))
                out.append(f"{name}_bucket{labels} {cumulative}")
            out.append(f"{name}_sum{self._labels(('route',), (route,))} {hist.total!r}")
            out.append(f"{name}_count{self._labels(('route',), (route,))} {hist.count}")

        name = "hexagon_gateway_requests_total"
        family(name, "counter", "Requests answered, by status code, route and upstream.")
        for (code, route, upstream), n in sorted(self.requests.items()):
            labels = self._labels(("code", "route", "upstream"), (code, route, upstream))
            out.append(f"{name}{labels} {n}")

        family("hexagon_gateway_requests_in_flight", "gauge", "Requests being handled now.")
        out.append(f"hexagon_gateway_requests_in_flight{self._labels((), ())} {self.in_flight}")

        name = "hexagon_gateway_config_reloads_total"
        family(name, "counter", "Config reloads by result; failed ones kept the old config.")
        for result, n in sorted(self.reloads.items()):
            out.append(f"{name}{self._labels(('result',), (result,))} {n}")

        name = "hexagon_gateway_upstream_errors_total"
        family(name, "counter", "Failed upstream attempts by kind.")
        for (upstream, kind), n in sorted(self.upstream_errors.items()):
            out.append(f"{name}{self._labels(('upstream', 'kind'), (upstream, kind))} {n}")

        name = "hexagon_gateway_retries_total"
        family(name, "counter", "Retries of idempotent requests on another endpoint.")
        for upstream, n in sorted(self.retries.items()):
            out.append(f"{name}{self._labels(('upstream',), (upstream,))} {n}")

        name = "hexagon_gateway_fastpath_handoffs_total"
        family(name, "counter", "Connections handed from the fast front end to aiohttp's server.")
        out.append(f"{name}{self._labels((), ())} {self.handoffs}")

        declared: set[str] = set()
        for collect in self.collectors:
            for metric, kind, help_text, names, values, value in collect():
                if metric not in declared:
                    declared.add(metric)
                    family(metric, kind, help_text)
                out.append(f"{metric}{self._labels(names, values)} {_fmt(value)}")
        return "\n".join(out) + "\n"


def node_labels(
    *, name: str | None, topology: str | None, spoke: str | None, ring: int | None
) -> dict[str, str]:
    """Constant labels from the node identity, only those present.

    `namespace` and `pod` are left to Prometheus' target labels, so they are never duplicated.
    """
    raw = {"hexagon_node": name, "hexagon_topology": topology, "hexagon_spoke": spoke}
    labels = {k: v for k, v in raw.items() if v}
    if ring is not None:
        labels["hexagon_ring"] = str(ring)
    return labels
