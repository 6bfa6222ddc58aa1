"""PromQL text for every health signal, and the scrape config that gives series their labels.

Why it exists: the operator asks Prometheus *once per signal per poll* for every gateway pod
it watches (never one query per pod), so the cost of a poll does not grow with the fleet.
Every query is grouped ``by (namespace, hexagon_node, pod)``; those three labels are the
contract between the scrape config below and the decision code, so both live here.

Labels (produced by :func:`relabel_configs` from Kubernetes pod service discovery):

* ``namespace``     - the pod's namespace;
* ``pod``           - the pod's name;
* ``hexagon_node``  - the HexagonNode the pod belongs to: pod label ``hexagon.dev/node``, or
  ``app.kubernetes.io/instance`` when the former is absent;
* ``hexagon_topology`` - pod label ``hexagon.dev/topology`` (optional filter).

Two ways to discover the gateways, same labels: :func:`scrape_config` (Kubernetes pod
discovery plus :func:`relabel_configs`) for an upstream Prometheus, and
:func:`http_sd_scrape_config` (the operator serves :func:`http_sd_targets`) for Debian's
Prometheus build, which lacks Kubernetes discovery (``promtool check config`` rejects
``kubernetes_sd_configs`` on it).

The scrape uses ``role: pod``, not ``role: endpoints``, on purpose: a healed pod leaves every
Service's endpoints (its ``hexagon.dev/in-rotation`` readiness gate goes False), and the
operator must keep seeing its metrics to decide when it may come back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from hexagon_operator.health.samples import PodKey, Signal

DURATION_BUCKET = "hexagon_gateway_request_duration_seconds_bucket"
REQUESTS_TOTAL = "hexagon_gateway_requests_total"
GROUP_LABELS = ("namespace", "hexagon_node", "pod")
NODE_LABEL_KEYS = ("hexagon.dev/node", "app.kubernetes.io/instance")
TOPOLOGY_LABEL_KEY = "hexagon.dev/topology"
APP_NAME_LABEL_KEY = "app.kubernetes.io/name"
APP_NAME = "hexagon-gateway"
DEFAULT_JOB = "hexagon-gateways"
DEFAULT_ADMIN_PORT = 9901

# Namespaces and topology names are DNS labels; anything else could change the query's meaning.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class QueryScope:
    """Which pods a poll covers: all of them, or some namespaces and/or one topology."""

    namespaces: tuple[str, ...] = ()
    topology: str | None = None

    def __post_init__(self) -> None:
        for value in (*self.namespaces, *([self.topology] if self.topology else [])):
            if not _DNS_LABEL.match(value):
                raise ValueError(
                    f"query scope value {value!r} is not a DNS-1123 label "
                    "(lower-case letters, digits and '-', at most 63 characters)"
                )


def selector(scope: QueryScope, *extra: str) -> str:
    """Label matchers restricting a metric to Hexagon gateway series in scope."""
    matchers = ['hexagon_node!=""', *extra]
    if scope.namespaces:
        matchers.append(f'namespace=~"{"|".join(sorted(set(scope.namespaces)))}"')
    if scope.topology:
        matchers.append(f'hexagon_topology="{scope.topology}"')
    return "{" + ", ".join(matchers) + "}"


def build_queries(scope: QueryScope, *, rate_window_seconds: int) -> dict[Signal, str]:
    """One PromQL expression per signal, each returning one series per pod.

    ``rate_window_seconds`` must cover at least two scrapes (four is safer), or ``rate`` has
    nothing to differentiate and every value becomes empty.
    """
    if rate_window_seconds < 1:
        raise ValueError(f"rate_window_seconds must be >= 1, got {rate_window_seconds}")
    by = "by (" + ", ".join(GROUP_LABELS) + ")"
    w = f"[{rate_window_seconds}s]"
    sel = selector(scope)
    total = f"sum {by} (rate({REQUESTS_TOTAL}{sel}{w}))"
    server_errors = selector(scope, 'code=~"5.."')
    errors = f"sum {by} (rate({REQUESTS_TOTAL}{server_errors}{w}))"
    return {
        Signal.P99: (
            f"histogram_quantile(0.99, sum by ({', '.join(GROUP_LABELS)}, le) "
            f"(rate({DURATION_BUCKET}{sel}{w})))"
        ),
        # A pod that never answered 5xx has no code="5xx" series at all; "or total * 0" turns
        # that absence into a 0 share instead of a missing value. 0/0 (no traffic) stays NaN.
        Signal.ERROR_RATIO: f"({errors} or ({total} * 0)) / {total}",
        Signal.REQUEST_RATE: total,
        Signal.UP: f"max {by} (up{sel})",
        # Age of the newest `up` sample: large when Prometheus stopped scraping the target.
        Signal.SCRAPE_AGE: f"time() - max {by} (timestamp(up{sel}))",
    }


def parse_value(raw: str) -> float:
    """Prometheus sends numbers as strings, including "NaN", "+Inf" and "-Inf"."""
    value = float(raw)
    return value if not math.isinf(value) else math.copysign(math.inf, value)


def parse_vector(result: Iterable[Mapping[str, Any]]) -> dict[PodKey, float]:
    """An instant-vector result -> value per pod; series without the three labels are skipped.

    If two series map to the same pod (should not happen after ``by``), the larger wins: for
    every signal here, larger is the more alarming reading, which is the safe side.
    """
    out: dict[PodKey, float] = {}
    for series in result:
        labels = series.get("metric", {})
        try:
            key = PodKey(labels["namespace"], labels["hexagon_node"], labels["pod"])
            value = parse_value(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        previous = out.get(key)
        if previous is None or math.isnan(previous) or value > previous:
            out[key] = value
    return out


def _meta_label(pod_label: str) -> str:
    """Kubernetes SD exposes pod label L as __meta_kubernetes_pod_label_<L sanitised>."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def relabel_configs(*, admin_port: int = DEFAULT_ADMIN_PORT) -> list[dict[str, Any]]:
    """Relabel rules turning a Kubernetes pod target into namespace/pod/hexagon_node labels.

    Order matters: a pod is kept only if it is a gateway (``app.kubernetes.io/name`` is
    ``hexagon-gateway``, or it carries ``hexagon.dev/node``) and the target is its admin port
    (role: pod yields one target per container port); then ``hexagon_node`` is set from
    ``app.kubernetes.io/instance`` and overwritten by ``hexagon.dev/node`` when that is
    present, so the Hexagon-specific label wins.
    """
    node_meta = [_meta_label(key) for key in NODE_LABEL_KEYS]
    return [
        # Keep gateway pods: labelled hexagon.dev/node, or app.kubernetes.io/name=APP_NAME
        # (``app.kubernetes.io/instance`` alone is too common to trust).
        {
            "action": "keep",
            "source_labels": [_meta_label(APP_NAME_LABEL_KEY), node_meta[0]],
            "separator": ";",
            "regex": f"{APP_NAME};.*|.*;.+",
        },
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_container_port_number"],
            "regex": str(admin_port),
        },
        {
            "action": "replace",
            "source_labels": ["__meta_kubernetes_namespace"],
            "target_label": "namespace",
        },
        {
            "action": "replace",
            "source_labels": ["__meta_kubernetes_pod_name"],
            "target_label": "pod",
        },
        *(
            {
                "action": "replace",
                "source_labels": [meta],
                "regex": "(.+)",
                "target_label": "hexagon_node",
            }
            for meta in reversed(node_meta)
        ),
        {
            "action": "replace",
            "source_labels": [_meta_label(TOPOLOGY_LABEL_KEY)],
            "regex": "(.+)",
            "target_label": "hexagon_topology",
        },
    ]


def scrape_config(
    *,
    job_name: str = DEFAULT_JOB,
    namespaces: Iterable[str] = (),
    scrape_interval_seconds: int = 15,
    admin_port: int = DEFAULT_ADMIN_PORT,
) -> dict[str, Any]:
    """A Prometheus ``scrape_configs`` entry for the gateways (dump it as YAML in the chart).

    The scrape timeout stays below the interval so that a hung gateway yields ``up == 0``
    every interval (the signal for ``ScrapeFailing``) instead of overlapping scrapes.
    """
    sd: dict[str, Any] = {"role": "pod"}
    names = sorted(set(namespaces))
    if names:
        sd["namespaces"] = {"names": names}
    interval = max(1, scrape_interval_seconds)
    timeout_ms = max(500, interval * 800)
    return {
        "job_name": job_name,
        "scrape_interval": f"{interval}s",
        "scrape_timeout": f"{timeout_ms}ms",
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [sd],
        "relabel_configs": relabel_configs(admin_port=admin_port),
    }


def default_rate_window(scrape_interval_seconds: int) -> int:
    """Four scrapes: ``rate`` survives one missed scrape and still has two points."""
    return max(4, 4 * scrape_interval_seconds)


@dataclass(frozen=True)
class ScrapeTarget:
    """One gateway pod's admin endpoint and the labels its series must carry."""

    namespace: str
    pod: str
    node: str
    ip: str
    topology: str = ""
    port: int = DEFAULT_ADMIN_PORT


def targets_from_pods(
    pods: Iterable[Mapping[str, Any]], *, port: int = DEFAULT_ADMIN_PORT
) -> list[ScrapeTarget]:
    """Gateway pods (Kubernetes pod objects as dicts) -> scrape targets; pods without an IP
    yet, or not gateways, are skipped. Same selection and labels as :func:`relabel_configs`."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        ip = (pod.get("status") or {}).get("podIP") or ""
        node = labels.get(NODE_LABEL_KEYS[0]) or (
            labels.get(NODE_LABEL_KEYS[1]) if labels.get(APP_NAME_LABEL_KEY) == APP_NAME else None
        )
        if not node or not ip:
            continue
        out.append(
            ScrapeTarget(
                namespace=meta.get("namespace", ""),
                pod=meta.get("name", ""),
                node=node,
                ip=ip,
                topology=labels.get(TOPOLOGY_LABEL_KEY, ""),
                port=port,
            )
        )
    return sorted(out, key=lambda t: (t.namespace, t.node, t.pod))


def http_sd_targets(targets: Iterable[ScrapeTarget]) -> list[dict[str, Any]]:
    """The body of an HTTP service-discovery endpoint (Prometheus ``http_sd_configs``).

    Needed because Debian's Prometheus build (the one this project packages) ships without
    Kubernetes service discovery: the operator, which watches the gateway pods anyway,
    serves this list and Prometheus polls it. Labels are final, so no relabelling is needed.
    """
    out = []
    for t in targets:
        labels = {"namespace": t.namespace, "pod": t.pod, "hexagon_node": t.node}
        if t.topology:
            labels["hexagon_topology"] = t.topology
        out.append({"targets": [f"{t.ip}:{t.port}"], "labels": labels})
    return out


def http_sd_scrape_config(
    *,
    url: str,
    job_name: str = DEFAULT_JOB,
    scrape_interval_seconds: int = 15,
    refresh_seconds: int = 5,
) -> dict[str, Any]:
    """A ``scrape_configs`` entry that discovers gateways from :func:`http_sd_targets`.

    A short refresh matters: after a respawn the new pod (new IP) is scraped only once
    Prometheus has re-read the list, and the heal waits for its metrics to restore it.
    """
    interval = max(1, scrape_interval_seconds)
    return {
        "job_name": job_name,
        "scrape_interval": f"{interval}s",
        "scrape_timeout": f"{max(500, interval * 800)}ms",
        "metrics_path": "/metrics",
        "http_sd_configs": [{"url": url, "refresh_interval": f"{max(1, refresh_seconds)}s"}],
    }


def scrape_config_yaml(**options: Any) -> str:
    """The scrape config as YAML, for the chart's bundled Prometheus or a user's own.

    ``python -m hexagon_operator.health.queries`` prints it with the defaults.
    """
    return str(yaml.safe_dump({"scrape_configs": [scrape_config(**options)]}, sort_keys=False))


if __name__ == "__main__":
    print(scrape_config_yaml(), end="")
