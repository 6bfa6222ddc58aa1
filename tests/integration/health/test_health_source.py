"""PrometheusSource against a real Prometheus scraping real local HTTP targets.

The targets are small HTTP servers serving the gateway's metric names with values the test
controls (request rate, 5xx share, latency, or a hang). Prometheus scrapes them through the
same relabel rules the chart uses (``queries.relabel_configs``), fed with the
``__meta_kubernetes_*`` labels Kubernetes service discovery would attach, so the rules
themselves are exercised by the real server. Nothing here is mocked.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hexagon_gateway.metrics import Metrics, node_labels
from hexagon_operator.health.monitor import Monitor
from hexagon_operator.health.queries import (
    QueryScope,
    ScrapeTarget,
    http_sd_scrape_config,
    http_sd_targets,
    relabel_configs,
    scrape_config,
)
from hexagon_operator.health.samples import Observation, PipelineStatus, PodKey, Signal, record
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.source import PrometheusSource
from hexagon_operator.health.verdicts import Code, Kind, Verdict, assess

from testenv.paths import binary
from testenv.prometheus import Prometheus, free_port

pytestmark = pytest.mark.prometheus

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RATE_WINDOW = 4
JOB = "hexagon-gateways"


@dataclass
class Behaviour:
    rps: float = 10.0
    error_share: float = 0.0
    latency_s: float = 0.02
    hang: bool = False


class GatewayTarget:
    """A real HTTP server exposing hexagon_gateway_* metrics computed from a Behaviour.

    Counters grow with wall time at ``rps``; every request of a period falls in the bucket
    of ``latency_s``. Changing the behaviour adds from now on, as a real counter would.
    """

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._ok = 0.0
        self._errors = 0.0
        self._buckets = dict.fromkeys(BUCKETS, 0.0)
        self._inf = 0.0
        self._sum = 0.0
        self._release = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if target.behaviour.hang:
                    target._release.wait(30)
                    return
                body = target.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, **changes: Any) -> None:
        with self._lock:
            self._accumulate()
            for key, value in changes.items():
                setattr(self.behaviour, key, value)

    def _accumulate(self) -> None:
        now = time.monotonic()
        n = self.behaviour.rps * (now - self._last)
        self._last = now
        self._errors += n * self.behaviour.error_share
        self._ok += n * (1 - self.behaviour.error_share)
        for le in BUCKETS:
            if self.behaviour.latency_s <= le:
                self._buckets[le] += n
        self._inf += n
        self._sum += n * self.behaviour.latency_s

    def render(self) -> str:
        with self._lock:
            self._accumulate()
            lines = ["# TYPE hexagon_gateway_requests_total counter"]
            lines.append(f'hexagon_gateway_requests_total{{code="200"}} {self._ok}')
            if self._errors:
                lines.append(f'hexagon_gateway_requests_total{{code="503"}} {self._errors}')
            lines.append("# TYPE hexagon_gateway_request_duration_seconds histogram")
            for le in BUCKETS:
                lines.append(
                    f'hexagon_gateway_request_duration_seconds_bucket{{le="{le}"}} '
                    f"{self._buckets[le]}"
                )
            lines.append(
                f'hexagon_gateway_request_duration_seconds_bucket{{le="+Inf"}} {self._inf}'
            )
            lines.append(f"hexagon_gateway_request_duration_seconds_sum {self._sum}")
            lines.append(f"hexagon_gateway_request_duration_seconds_count {self._inf}")
            return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def k8s_target(
    target: GatewayTarget,
    *,
    pod: str,
    namespace: str = "hx",
    instance: str | None = None,
    node_label: str | None = None,
    app: str = "hexagon-gateway",
    port_number: int = 9901,
    topology: str = "blue",
) -> dict[str, Any]:
    """A static target carrying the meta labels Kubernetes pod discovery would attach."""
    labels = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_container_port_number": str(port_number),
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
        "__meta_kubernetes_pod_label_hexagon_dev_topology": topology,
    }
    if instance is not None:
        labels["__meta_kubernetes_pod_label_app_kubernetes_io_instance"] = instance
    if node_label is not None:
        labels["__meta_kubernetes_pod_label_hexagon_dev_node"] = node_label
    return {"targets": [f"127.0.0.1:{target.port}"], "labels": labels}


def prom_config(static: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": JOB,
                "scrape_interval": "1s",
                "scrape_timeout": "800ms",
                "static_configs": static,
                "relabel_configs": relabel_configs(),
            }
        ],
    }


@pytest.fixture
def targets() -> Iterator[Callable[[], GatewayTarget]]:
    made: list[GatewayTarget] = []

    def make() -> GatewayTarget:
        made.append(GatewayTarget())
        return made[-1]

    yield make
    for t in made:
        t.close()


A0 = PodKey("hx", "alpha", "alpha-0")
A1 = PodKey("hx", "alpha", "alpha-1")
B0 = PodKey("hx", "beta", "beta-0")


async def poll_until(
    source: PrometheusSource, ready: Callable[[Observation], bool], *, within: float = 60
) -> Observation:
    """Poll until ready(observation) holds; on timeout fail with the last observation."""
    deadline = time.monotonic() + within
    last = await source.observe()
    while not ready(last):
        if time.monotonic() > deadline:
            pytest.fail(f"observation never became ready: {last}")
        await asyncio.sleep(0.5)
        last = await source.observe()
    return last


def fleet(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
    targets: Callable[[], GatewayTarget],
) -> tuple[Prometheus, dict[PodKey, GatewayTarget]]:
    a0, a1, b0, other, wrong_port = (targets() for _ in range(5))
    a0.set(rps=20, error_share=0.0, latency_s=0.02)
    a1.set(rps=20, error_share=0.4, latency_s=2.0)
    b0.set(rps=0)
    static = [
        k8s_target(a0, pod="alpha-0", instance="alpha"),
        k8s_target(a1, pod="alpha-1", instance="alpha"),
        # hexagon.dev/node wins over app.kubernetes.io/instance
        k8s_target(b0, pod="beta-0", instance="release-x", node_label="beta"),
        k8s_target(other, pod="not-a-gateway", instance="alpha", app="something-else"),
        k8s_target(wrong_port, pod="alpha-0", instance="alpha", port_number=8080),
    ]
    prom = prometheus(prom_config(static))
    prom.wait_for_target(JOB, count=3)
    return prom, {A0: a0, A1: a1, B0: b0}


def _has_rates(o: Observation) -> bool:
    return (
        o.status is PipelineStatus.OK
        and {A0, A1, B0} <= set(o.pods)
        and all((o.pods[k].request_rate or 0) > 16 for k in (A0, A1))
    )


async def test_observe_reads_every_signal_for_every_pod(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
    targets: Callable[[], GatewayTarget],
) -> None:
    prom, _ = fleet(prometheus, targets)
    source = PrometheusSource(prom.url, rate_window_seconds=RATE_WINDOW, timeout_seconds=5)
    try:
        o = await poll_until(source, _has_rates)
    finally:
        source.close()
    # relabelling kept exactly the three gateway admin targets, with the right node names
    assert set(o.pods) == {A0, A1, B0}
    a0, a1, b0 = o.pods[A0], o.pods[A1], o.pods[B0]
    assert a0.request_rate is not None and 15 < a0.request_rate < 25
    assert a0.p99_seconds is not None and a0.p99_seconds <= 0.025
    assert a0.error_ratio == 0.0  # no 5xx series at all -> 0, not missing
    assert a1.p99_seconds is not None and 1.0 < a1.p99_seconds <= 2.5
    assert a1.error_ratio is not None and 0.3 < a1.error_ratio < 0.5
    assert b0.request_rate == 0.0
    assert b0.p99_seconds is not None and math.isnan(b0.p99_seconds)  # no traffic: 0/0
    for pod in (a0, a1, b0):
        assert pod.up == 1.0
        assert pod.scrape_age_seconds is not None and pod.scrape_age_seconds < 5


async def test_scope_filters_namespace_and_topology(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
    targets: Callable[[], GatewayTarget],
) -> None:
    mine, theirs, other_topology = targets(), targets(), targets()
    static = [
        k8s_target(mine, pod="m-0", namespace="mine", instance="m"),
        k8s_target(theirs, pod="t-0", namespace="theirs", instance="t"),
        k8s_target(other_topology, pod="o-0", namespace="mine", instance="o", topology="red"),
    ]
    prom = prometheus(prom_config(static))
    prom.wait_for_target(JOB, count=3)
    source = PrometheusSource(
        prom.url, scope=QueryScope(namespaces=("mine",), topology="blue"), rate_window_seconds=4
    )
    try:
        o = await poll_until(source, lambda o: o.status is PipelineStatus.OK and bool(o.pods))
    finally:
        source.close()
    assert set(o.pods) == {PodKey("mine", "m", "m-0")}


async def test_hung_pod_is_scrape_failing_while_peers_are_fine(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
    targets: Callable[[], GatewayTarget],
) -> None:
    prom, pods = fleet(prometheus, targets)
    pods[A1].set(error_share=0.0, latency_s=0.02)
    source = PrometheusSource(prom.url, rate_window_seconds=RATE_WINDOW)
    monitor = Monitor(HealSettings())
    uids = {A0: "u0", A1: "u1", B0: "u2"}
    try:
        await poll_until(source, _has_rates)
        pods[A1].set(hang=True)
        # the operator polls on its interval; three failed scrapes in a row make a breach
        verdicts: dict[PodKey, Verdict] = {}
        for _ in range(30):
            o = await poll_until(
                source,
                lambda o: o.status is PipelineStatus.OK and o.pods[A1].up == 0.0,
            )
            verdicts = dict(monitor.update(o, uids).verdicts)
            if verdicts[A1].kind is Kind.BREACHING:
                break
            await asyncio.sleep(1.0)
    finally:
        source.close()
    assert o.pods[A0].up == 1.0
    assert verdicts[A1].kind is Kind.BREACHING
    assert verdicts[A1].codes() == (Code.SCRAPE_FAILING,)
    assert verdicts[A0].kind is Kind.HEALTHY


async def test_stopped_prometheus_is_reported_unreachable_not_raised(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
    targets: Callable[[], GatewayTarget],
) -> None:
    prom, _ = fleet(prometheus, targets)
    source = PrometheusSource(prom.url, rate_window_seconds=RATE_WINDOW, timeout_seconds=2)
    try:
        await poll_until(source, _has_rates)
        prom.stop()
        o = await source.observe()
    finally:
        source.close()
    assert o.status is PipelineStatus.UNREACHABLE
    assert prom.url.removeprefix("http://") in o.detail
    assert source.errors["prometheus-unreachable"] == 1
    assessment = assess(record({}, o, window_seconds=60), o, HealSettings(), pods=[A0, A1, B0])
    assert not assessment.pipeline.available
    assert assessment.pipeline.reason is Code.PROMETHEUS_UNREACHABLE
    assert {v.kind for v in assessment.verdicts.values()} == {Kind.UNKNOWN}


async def test_failed_query_is_named(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
    targets: Callable[[], GatewayTarget],
) -> None:
    prom, _ = fleet(prometheus, targets)
    source = PrometheusSource(prom.url, rate_window_seconds=RATE_WINDOW)
    source.queries[Signal.P99] = "histogram_quantile(0.99, sum by (le) (rate(nope[1s]))"  # syntax
    try:
        o = await source.observe()
    finally:
        source.close()
    assert o.status is PipelineStatus.QUERY_FAILED
    assert o.failed == (Signal.P99,)
    assert "400" in o.detail or "bad_data" in o.detail


async def test_prometheus_without_gateway_series_is_empty(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
    targets: Callable[[], GatewayTarget],
) -> None:
    plain = targets()
    config = prom_config([k8s_target(plain, pod="x-0", instance="x", app="not-a-gateway")])
    prom = prometheus(config)
    source = PrometheusSource(prom.url, rate_window_seconds=RATE_WINDOW)
    try:
        o = await source.observe()
    finally:
        source.close()
    assert o.status is PipelineStatus.EMPTY


async def test_nobody_listening_is_unreachable() -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_seconds=1)
    try:
        o = await source.observe()
    finally:
        source.close()
    assert o.status is PipelineStatus.UNREACHABLE
    assert o.pods == {}


class DiscoveryServer:
    """A real HTTP service-discovery endpoint serving ``http_sd_targets`` as the operator would."""

    def __init__(self, targets: list[ScrapeTarget]) -> None:
        self.targets = targets
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(http_sd_targets(server.targets)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/targets"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def test_http_service_discovery_gives_the_same_labels(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
    targets: Callable[[], GatewayTarget],
) -> None:
    a0, b0 = targets(), targets()
    sd = DiscoveryServer(
        [
            ScrapeTarget("hx", "alpha-0", "alpha", "127.0.0.1", "blue", a0.port),
            ScrapeTarget("hx", "beta-0", "beta", "127.0.0.1", "blue", b0.port),
        ]
    )
    try:
        config = {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [
                http_sd_scrape_config(url=sd.url, scrape_interval_seconds=1, refresh_seconds=1)
            ],
        }
        prom = prometheus(config)
        prom.wait_for_target(JOB, count=2)
        source = PrometheusSource(prom.url, rate_window_seconds=RATE_WINDOW)
        try:
            o = await poll_until(
                source, lambda o: o.status is PipelineStatus.OK and (o.pods.get(A0) is not None)
            )
            assert set(o.pods) == {A0, B0}
            # a respawned pod is a new target: the list changes, Prometheus follows it
            sd.targets = [sd.targets[0]]
            o = await poll_until(source, lambda o: set(o.pods) == {A0}, within=30)
        finally:
            source.close()
    finally:
        sd.close()


@pytest.mark.parametrize(
    ("config", "valid"),
    [
        pytest.param(
            {"scrape_configs": [http_sd_scrape_config(url="http://operator:8080/targets")]},
            True,
            id="http-sd",
        ),
        # Debian's build has no Kubernetes discovery; an upstream build accepts this one.
        pytest.param({"scrape_configs": [scrape_config()]}, False, id="kubernetes-sd-on-debian"),
    ],
)
def test_promtool_checks_the_scrape_configs(
    config: dict[str, Any], valid: bool, tmp_path: Path
) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) is valid, result.stdout + result.stderr


class RealMetricsTarget(GatewayTarget):
    """Same target, but the text comes from the gateway's own ``Metrics`` class: the
    contract test that the operator's queries read what the gateway really exports."""

    def __init__(self, node: str) -> None:
        self.metrics = Metrics(
            const_labels=node_labels(name=node, topology="blue", spoke="north", ring=1)
        )
        self._carry = 0.0
        super().__init__()

    def render(self) -> str:
        with self._lock:
            now = time.monotonic()
            self._carry += self.behaviour.rps * (now - self._last)
            self._last = now
            while self._carry >= 1.0:
                self._carry -= 1.0
                failed = (self.metrics.requests.get(("503", "/api", "up"), 0) + 1) <= (
                    sum(self.metrics.requests.values()) + 1
                ) * self.behaviour.error_share
                self.metrics.observe(
                    route="/api",
                    upstream="up",
                    code=503 if failed else 200,
                    seconds=self.behaviour.latency_s,
                )
            return self.metrics.render()


async def test_queries_read_the_real_gateway_exposition(
    prometheus: Callable[[Mapping[str, Any]], Prometheus],
) -> None:
    fast, slow = RealMetricsTarget("alpha"), RealMetricsTarget("alpha")
    try:
        fast.set(rps=20, latency_s=0.03)
        slow.set(rps=20, latency_s=0.9, error_share=0.5)
        static = [
            k8s_target(fast, pod="alpha-0", instance="alpha"),
            k8s_target(slow, pod="alpha-1", instance="alpha"),
        ]
        prom = prometheus(prom_config(static))
        prom.wait_for_target(JOB, count=2)
        source = PrometheusSource(prom.url, rate_window_seconds=RATE_WINDOW)
        try:
            o = await poll_until(
                source,
                lambda o: (
                    o.status is PipelineStatus.OK
                    and {A0, A1} <= set(o.pods)
                    and all((o.pods[k].request_rate or 0) > 16 for k in (A0, A1))
                ),
            )
        finally:
            source.close()
    finally:
        fast.close()
        slow.close()
    assert set(o.pods) == {A0, A1}  # the gateway's own hexagon_node label does not split series
    a0, a1 = o.pods[A0], o.pods[A1]
    assert a0.p99_seconds is not None and 0.025 < a0.p99_seconds <= 0.04
    assert a1.p99_seconds is not None and 0.8 < a1.p99_seconds <= 1.0  # the 0.8-1.0 bucket
    assert a0.error_ratio == 0.0
    assert a1.error_ratio is not None and 0.4 < a1.error_ratio < 0.6
