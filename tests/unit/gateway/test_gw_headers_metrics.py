"""Header rewriting (hop-by-hop, forwarding trust) and the Prometheus exposition."""

from __future__ import annotations

import ipaddress

import pytest
from hexagon_gateway.headers import TrustedPeers, request_head, response_headers
from hexagon_gateway.metrics import Metrics, node_labels

RAW = (
    (b"X-Secret", b"named-by-a-later-connection-header"),
    (b"Host", b"example"),
    (b"Connection", b"keep-alive, X-Secret"),
    (b"Keep-Alive", b"timeout=5"),
    (b"X-Secret", b"named-by-connection"),
    (b"TE", b"trailers"),
    (b"Proxy-Authorization", b"Basic x"),
    (b"X-Forwarded-For", b"1.2.3.4"),
    (b"X-Forwarded-Proto", b"https"),
    (b"Forwarded", b"for=1.2.3.4;proto=https"),
    (b"Accept", b"*/*"),
)


def head(*, trusted: bool, chunked: bool = False) -> list[str]:
    text = request_head(
        method="GET",
        target="/a?b=1",
        raw_headers=RAW,
        peer="10.1.2.3",
        trusted=trusted,
        scheme="http",
        chunked=chunked,
    ).decode()
    assert text.endswith("\r\n\r\n")
    return text.split("\r\n")[:-2]


def test_hop_by_hop_and_connection_named_headers_are_dropped() -> None:
    lines = head(trusted=False)
    assert lines[0] == "GET /a?b=1 HTTP/1.1"
    names = {line.split(":")[0].lower() for line in lines[1:]}
    assert names.isdisjoint({"connection", "keep-alive", "x-secret", "te", "proxy-authorization"})
    assert {"host", "accept"} <= names


@pytest.mark.parametrize(
    ("trusted", "xff", "proto", "forwarded"),
    [
        pytest.param(
            False, "10.1.2.3", "http", "for=10.1.2.3;proto=http", id="untrusted-peer-replaced"
        ),
        pytest.param(
            True,
            "1.2.3.4, 10.1.2.3",
            "https",
            "for=1.2.3.4;proto=https, for=10.1.2.3;proto=http",
            id="trusted-peer-appended",
        ),
    ],
)
def test_forwarding_headers(trusted: bool, xff: str, proto: str, forwarded: str) -> None:
    lines = head(trusted=trusted)
    assert f"X-Forwarded-For: {xff}" in lines
    assert f"X-Forwarded-Proto: {proto}" in lines
    assert f"Forwarded: {forwarded}" in lines
    assert sum(line.lower().startswith("x-forwarded-for") for line in lines) == 1


def test_chunked_framing_is_ours() -> None:
    assert "Transfer-Encoding: chunked" in head(trusted=False, chunked=True)


def test_ipv6_forwarded_node_is_quoted() -> None:
    text = request_head(
        method="GET", target="/", raw_headers=(), peer="::1", trusted=False, scheme="http",
        chunked=False,
    ).decode()  # fmt: skip
    assert 'Forwarded: for="[::1]";proto=http' in text


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        pytest.param("10.9.9.9", True, id="in-cidr"),
        pytest.param("11.0.0.1", False, id="outside"),
        pytest.param("not-an-ip", False, id="garbage"),
        pytest.param("::1", True, id="ipv6-host"),
    ],
)
def test_trusted_peers(peer: str, expected: bool) -> None:
    nets = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert (peer in TrustedPeers(nets)) is expected


def test_response_headers_drop_hop_by_hop_and_framing() -> None:
    out = response_headers(
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close, X-Internal"),
            ("X-Internal", "1"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]
    )
    assert out == [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_histogram_and_counters_render() -> None:
    metrics = Metrics(const_labels=node_labels(name="north", topology="demo", spoke=None, ring=1))
    metrics.observe(route="api", upstream="up", code=200, seconds=0.0009)
    metrics.observe(route="api", upstream="up", code=503, seconds=0.7)
    metrics.observe(route="api", upstream="up", code=200, seconds=30.0)
    text = metrics.render()
    lab = 'hexagon_node="north",hexagon_topology="demo",hexagon_ring="1"'
    assert (
        f'hexagon_gateway_request_duration_seconds_bucket{{{lab},route="api",le="0.001"}} 1' in text
    )
    assert (
        f'hexagon_gateway_request_duration_seconds_bucket{{{lab},route="api",le="0.8"}} 2' in text
    )
    assert f'hexagon_gateway_request_duration_seconds_bucket{{{lab},route="api",le="10"}} 2' in text
    assert (
        f'hexagon_gateway_request_duration_seconds_bucket{{{lab},route="api",le="+Inf"}} 3' in text
    )
    assert f'hexagon_gateway_request_duration_seconds_count{{{lab},route="api"}} 3' in text
    assert f'hexagon_gateway_requests_total{{{lab},code="503",route="api",upstream="up"}} 1' in text
    assert "pod=" not in text and "namespace=" not in text


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.observe(route='a"b\\c', upstream="", code=200, seconds=0.1)
    assert 'route="a\\"b\\\\c"' in metrics.render()
