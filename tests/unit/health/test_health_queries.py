"""PromQL text, result parsing, the scrape/relabel config, settings parsing and the window."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hexagon_operator import api
from hexagon_operator.health.queries import (
    QueryScope,
    build_queries,
    default_rate_window,
    http_sd_scrape_config,
    http_sd_targets,
    parse_vector,
    relabel_configs,
    scrape_config,
    targets_from_pods,
)
from hexagon_operator.health.records import failures_in_a_row, iso, settle
from hexagon_operator.health.samples import (
    Observation,
    PipelineStatus,
    PodKey,
    PodSignals,
    Signal,
    forget,
    record,
)
from hexagon_operator.health.settings import (
    HealSettings,
    settings_from_dataclass,
    settings_from_spec,
)

BY = "by (namespace, hexagon_node, pod)"


def test_one_query_per_signal_grouped_by_pod() -> None:
    queries = build_queries(QueryScope(), rate_window_seconds=20)
    assert set(queries) == set(Signal)
    for signal, text in queries.items():
        assert "by (namespace, hexagon_node, pod" in text, signal
        assert 'hexagon_node!=""' in text
    assert queries[Signal.P99].startswith(
        "histogram_quantile(0.99, sum by (namespace, hexagon_node, pod, le)"
    )
    assert "hexagon_gateway_request_duration_seconds_bucket" in queries[Signal.P99]
    assert "[20s]" in queries[Signal.P99]
    assert 'code=~"5.."' in queries[Signal.ERROR_RATIO]
    assert " or (" in queries[Signal.ERROR_RATIO]  # no 5xx series yet -> share 0, not absent
    assert queries[Signal.REQUEST_RATE] == (
        f'sum {BY} (rate(hexagon_gateway_requests_total{{hexagon_node!=""}}[20s]))'
    )
    assert queries[Signal.UP] == f'max {BY} (up{{hexagon_node!=""}})'
    assert queries[Signal.SCRAPE_AGE].startswith("time() - max")
    assert "timestamp(up" in queries[Signal.SCRAPE_AGE]


@pytest.mark.parametrize(
    ("scope", "needle"),
    [
        pytest.param(QueryScope(namespaces=("b", "a", "a")), 'namespace=~"a|b"', id="namespaces"),
        pytest.param(QueryScope(topology="blue"), 'hexagon_topology="blue"', id="topology"),
    ],
)
def test_scope_filters_every_query(scope: QueryScope, needle: str) -> None:
    for text in build_queries(scope, rate_window_seconds=8).values():
        assert needle in text


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param({"namespaces": ('a"} or vector(1) #',)}, id="injection"),
        pytest.param({"namespaces": ("UPPER",)}, id="not-dns"),
        pytest.param({"topology": "x" * 64}, id="too-long"),
    ],
)
def test_scope_rejects_values_that_are_not_dns_labels(scope: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="DNS-1123"):
        QueryScope(**scope)


def test_rate_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate_window_seconds"):
        build_queries(QueryScope(), rate_window_seconds=0)


@pytest.mark.parametrize(
    ("interval", "window"),
    [pytest.param(1, 4, id="1s"), pytest.param(5, 20, id="5s"), pytest.param(15, 60, id="15s")],
)
def test_default_rate_window_covers_four_scrapes(interval: int, window: int) -> None:
    assert default_rate_window(interval) == window


def series(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.0, value]}


POD = {"namespace": "ns", "hexagon_node": "alpha", "pod": "alpha-0"}
KEY = PodKey("ns", "alpha", "alpha-0")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param([series("0.25", **POD)], {KEY: 0.25}, id="number"),
        pytest.param([series("+Inf", **POD)], {KEY: math.inf}, id="inf"),
        pytest.param([series("1", namespace="ns", pod="p")], {}, id="missing-node-label"),
        pytest.param([{"metric": POD}], {}, id="no-value"),
        pytest.param([series("abc", **POD)], {}, id="garbage-value"),
        pytest.param(
            [series("0.1", **POD), series("0.3", **POD)], {KEY: 0.3}, id="duplicate-keeps-larger"
        ),
        pytest.param(
            [series("NaN", **POD), series("0.3", **POD)],
            {KEY: 0.3},
            id="duplicate-number-beats-nan",
        ),
        pytest.param([], {}, id="empty"),
    ],
)
def test_parse_vector(result: list[dict[str, Any]], expected: dict[PodKey, float]) -> None:
    assert parse_vector(result) == expected


def test_parse_vector_keeps_nan() -> None:
    (value,) = parse_vector([series("NaN", **POD)]).values()
    assert math.isnan(value)


def test_scrape_config_uses_pod_discovery_and_relabels_the_contract_labels() -> None:
    cfg = scrape_config(namespaces=["b", "a"], scrape_interval_seconds=1)
    assert cfg["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["a", "b"]}}]
    assert cfg["scrape_interval"] == "1s" and cfg["scrape_timeout"] == "800ms"
    targets = {r.get("target_label") for r in cfg["relabel_configs"]}
    assert {"namespace", "pod", "hexagon_node", "hexagon_topology"} <= targets
    yaml.safe_dump(cfg)  # the chart dumps it as YAML


def test_relabel_rules_follow_the_api_labels() -> None:
    rules = relabel_configs(admin_port=api.ADMIN_PORT)
    keep_app = rules[0]
    assert keep_app["source_labels"][0] == "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    assert keep_app["regex"].startswith(f"{api.APP_NAME};")
    assert rules[1]["regex"] == str(api.ADMIN_PORT)
    node_rules = [r for r in rules if r.get("target_label") == "hexagon_node"]
    # instance first, hexagon.dev/node last so it wins when both are present
    assert [r["source_labels"][0] for r in node_rules] == [
        "__meta_kubernetes_pod_label_app_kubernetes_io_instance",
        "__meta_kubernetes_pod_label_hexagon_dev_node",
    ]


# ---------------------------------------------------------------- settings


def test_settings_from_spec_camel_case() -> None:
    s = settings_from_spec(
        {"p99ThresholdMs": 500, "paused": True, "maxUnavailablePercent": 50, "unknownKey": 1}
    )
    assert (s.p99_threshold_ms, s.paused, s.max_unavailable_percent) == (500.0, True, 50.0)
    assert settings_from_spec(None) == HealSettings()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"paused": "yes"}, "spec.selfHeal.paused: expected bool", id="bool"),
        pytest.param({"windowSeconds": "long"}, "spec.selfHeal.windowSeconds", id="float"),
        pytest.param({"consecutiveBreaches": 0}, "consecutiveBreaches must be >= 1", id="range"),
        pytest.param({"maxUnavailablePercent": 0}, "maxUnavailablePercent", id="percent"),
    ],
)
def test_settings_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_from_spec(spec)


def test_settings_from_the_api_dataclass() -> None:
    spec = api.SelfHealSpec(p99_threshold_ms=900, cooldown_seconds=60)
    s = settings_from_dataclass(spec, stale_after_seconds=15.0)
    assert (s.p99_threshold_ms, s.cooldown_seconds, s.stale_after_seconds) == (900, 60, 15.0)
    assert s.max_unavailable_percent == spec.max_unavailable_percent


# ---------------------------------------------------------------- window


def obs(at: float, *keys: PodKey, status: PipelineStatus = PipelineStatus.OK) -> Observation:
    return Observation(at=at, status=status, pods={k: PodSignals(up=1.0) for k in keys})


OTHER = PodKey("ns", "alpha", "alpha-1")


def test_window_drops_old_samples_and_keeps_min_keep() -> None:
    w: dict[PodKey, Any] = {}
    for t in range(0, 100, 10):
        w = record(w, obs(t, KEY), window_seconds=30)
    assert [s.at for s in w[KEY]] == [60, 70, 80, 90]
    w = record(w, obs(200, KEY), window_seconds=30, min_keep=3)
    assert [s.at for s in w[KEY]] == [80, 90, 200]


def test_window_gap_samples_on_pipeline_failure_and_forget() -> None:
    w = record({}, obs(0, KEY, OTHER), window_seconds=60)
    w = record(w, obs(5, status=PipelineStatus.UNREACHABLE), window_seconds=60)
    assert [s.pipeline_ok for s in w[KEY]] == [True, False]
    assert w[KEY][-1].up is None
    w = record(w, obs(10, KEY), pods=frozenset({KEY}), window_seconds=60)
    assert set(w) == {KEY}  # a pod Kubernetes no longer lists is forgotten
    assert forget(w, frozenset({KEY})) == {}


def test_p99_is_converted_to_milliseconds() -> None:
    o = Observation(at=0, status=PipelineStatus.OK, pods={KEY: PodSignals(p99_seconds=0.8)})
    assert record({}, o, window_seconds=60)[KEY][0].p99_ms == 800.0


# ---------------------------------------------------------------- records


def test_settle_moves_finished_heals_to_bounded_history() -> None:
    done = {"step": "Done", "stepState": "Done", "pods": [{"name": "p"}], "outcome": "Restored"}
    live = {"step": "Probing", "stepState": "Started", "pods": [{"name": "q"}]}
    history = [{"n": i} for i in range(20)]
    active, hist = settle([done, live], history, limit=20)
    assert active == [live]
    assert len(hist) == 20 and hist[-1] == done and hist[0] == {"n": 1}


def test_failures_in_a_row_stop_at_success() -> None:
    def r(outcome: str) -> dict[str, Any]:
        return {"pods": [{"name": "p"}], "outcome": outcome, "finishedAt": iso(0)}

    assert failures_in_a_row([r("Failed"), r("Restored"), r("Failed"), r("Failed")], "p") == 2
    assert failures_in_a_row([r("Failed")], "other") == 0


def pod(name: str, ip: str | None, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "status": {"podIP": ip},
    }


GW = {api.LABEL_NAME: api.APP_NAME, api.LABEL_INSTANCE: "alpha", api.LABEL_TOPOLOGY: "blue"}


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param(
            [pod("alpha-0", "10.0.0.1", **GW)],
            [("alpha-0", "alpha", "10.0.0.1:9901")],
            id="gateway",
        ),
        pytest.param([pod("alpha-0", None, **GW)], [], id="no-ip-yet"),
        pytest.param(
            [pod("x-0", "10.0.0.2", **{api.LABEL_INSTANCE: "x"})],
            [],
            id="instance-alone-is-not-a-gateway",
        ),
        pytest.param(
            [pod("y-0", "10.0.0.3", **{"hexagon.dev/node": "y"})],
            [("y-0", "y", "10.0.0.3:9901")],
            id="node-label",
        ),
        pytest.param(
            [pod("z-0", "10.0.0.4", **GW, **{"hexagon.dev/node": "zeta"})],
            [("z-0", "zeta", "10.0.0.4:9901")],
            id="node-label-wins",
        ),
    ],
)
def test_http_sd_targets_from_pods(
    pods: list[dict[str, Any]], expected: list[tuple[str, str, str]]
) -> None:
    body = http_sd_targets(targets_from_pods(pods))
    assert [
        (b["labels"]["pod"], b["labels"]["hexagon_node"], b["targets"][0]) for b in body
    ] == expected
    for entry in body:
        assert entry["labels"]["namespace"] == "ns"


def test_http_sd_scrape_config() -> None:
    cfg = http_sd_scrape_config(url="http://op:8080/targets", scrape_interval_seconds=1)
    assert cfg["http_sd_configs"] == [{"url": "http://op:8080/targets", "refresh_interval": "5s"}]
    assert cfg["job_name"] == "hexagon-gateways"
    assert "relabel_configs" not in cfg  # labels come final from the operator


def test_health_names_match_the_api_constants() -> None:
    from hexagon_operator.health import conditions
    from hexagon_operator.health.actions import EventReason

    assert conditions.METRICS_AVAILABLE == api.Cond.METRICS_AVAILABLE
    assert conditions.HEALING == api.Cond.HEALING
    assert conditions.DEGRADED == api.Cond.DEGRADED
    for name in ("POD_ISOLATED", "PROBE_FAILED", "POD_RESPAWNED", "POD_RESTORED"):
        assert getattr(EventReason, name) == getattr(api.Reason, name)
