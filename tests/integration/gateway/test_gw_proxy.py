"""Proxying through the real gateway to real upstreams on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from .conftest import RunningGateway, Upstream, free_port, gateway_config

Start = Callable[..., Awaitable[RunningGateway]]
Ups = Callable[[str], Awaitable[Upstream]]


async def test_forwarding_headers_and_strip_prefix(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    routes = [
        {"name": "api", "match": {"pathPrefix": "/api"}, "upstream": "a", "stripPrefix": True}
    ]
    gw = await gateway(gateway_config({"a": [up.address]}, routes))
    headers = {"Connection": "keep-alive, X-Drop", "X-Drop": "1", "X-Keep": "2",
               "X-Forwarded-For": "6.6.6.6"}  # fmt: skip
    async with gw.session.get(f"{gw.url}/api/users/../items?q=1", headers=headers) as resp:
        assert resp.status == 200
        body = await resp.json()
        assert "X-Hop" not in resp.headers  # named in the upstream's Connection header
        assert resp.headers["X-Up"] == "a"
    assert body["path"] == "/items?q=1"
    seen = up.seen_headers[-1]
    assert "x-drop" not in seen and seen["x-keep"] == "2"
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the client is not a trusted proxy
    assert seen["forwarded"] == "for=127.0.0.1;proto=http"
    assert seen["x-forwarded-proto"] == "http"


async def test_trusted_proxy_chain_is_extended(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    routes = [{"name": "all", "match": {"pathPrefix": "/"}, "upstream": "a"}]
    gw = await gateway(gateway_config({"a": [up.address]}, routes, trustedProxies=["127.0.0.0/8"]))
    headers = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    async with gw.session.get(f"{gw.url}/x", headers=headers) as resp:
        assert resp.status == 200
    seen = up.seen_headers[-1]
    assert seen["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"


async def test_routing_by_method_header_and_404(gateway: Start, upstreams: Ups) -> None:
    a, b, c = await upstreams("a"), await upstreams("b"), await upstreams("c")
    routes = [
        {"name": "reads", "match": {"pathPrefix": "/api", "methods": ["GET"]}, "upstream": "a"},
        {
            "name": "canary",
            "match": {"pathPrefix": "/api", "headers": [{"name": "x-env", "value": "canary"}]},
            "upstream": "b",
        },
        {"name": "exact", "match": {"path": "/api/health"}, "upstream": "c"},
    ]
    gw = await gateway(
        gateway_config({"a": [a.address], "b": [b.address], "c": [c.address]}, routes)
    )

    async def who(method: str, path: str, headers: dict[str, str] | None = None) -> Any:
        async with gw.session.request(method, f"{gw.url}{path}", headers=headers) as resp:
            body = await resp.json()
            return resp.status, body.get("upstream") or body["error"]

    assert await who("GET", "/api/x") == (200, "a")
    assert await who("POST", "/api/x", {"X-Env": "canary"}) == (200, "b")
    assert await who("GET", "/api/health") == (200, "c")
    assert await who("POST", "/api/x") == (404, "no_route")
    assert await who("GET", "/other") == (404, "no_route")


async def test_body_limits(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    routes = [{"name": "up", "match": {"pathPrefix": "/"}, "upstream": "a", "maxBodyBytes": 1000}]
    gw = await gateway(gateway_config({"a": [up.address]}, routes))
    async with gw.session.post(f"{gw.url}/x", data=b"x" * 1000) as resp:
        assert resp.status == 200 and (await resp.json())["len"] == 1000
    async with gw.session.post(f"{gw.url}/x", data=b"x" * 1001) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"] == "body_too_large"

    async def chunks() -> Any:
        for _ in range(5):
            yield b"y" * 300

    async with gw.session.post(f"{gw.url}/x", data=chunks()) as resp:  # chunked, no length
        assert resp.status == 413


async def test_timeouts_and_connect_failure(gateway: Start, upstreams: Ups) -> None:
    slow = await upstreams("slow")
    slow.delay = 5.0
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    doc = gateway_config(
        {"slow": [slow.address], "dead": [dead]},
        [
            {"name": "slow", "match": {"pathPrefix": "/slow"}, "upstream": "slow",
             "timeouts": {"firstByteMs": 200}},
            {"name": "stall", "match": {"pathPrefix": "/stall"}, "upstream": "slow",
             "timeouts": {"totalMs": 300}},
            {"name": "dead", "match": {"pathPrefix": "/dead"}, "upstream": "dead"},
        ],
    )  # fmt: skip
    gw = await gateway(doc)
    async with gw.session.get(f"{gw.url}/slow") as resp:
        assert resp.status == 504
        assert (await resp.json())["error"] == "upstream_timeout"
    async with gw.session.get(f"{gw.url}/dead") as resp:
        assert resp.status == 502
        assert (await resp.json())["error"] == "upstream_connect_failure"
    # headers already sent when the total deadline passes: the client connection is cut
    async with gw.session.get(f"{gw.url}/stall") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_idempotent_retry_on_another_endpoint(gateway: Start, upstreams: Ups) -> None:
    bad, good = await upstreams("bad"), await upstreams("good")
    bad.status = 503
    doc = gateway_config({"pool": [bad.address, good.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "pool"}])  # fmt: skip
    doc["upstreams"][0]["retries"] = {"attempts": 1, "retryOn": ["5xx"], "budgetPercent": 100}
    doc["upstreams"][0]["outlierDetection"] = {"consecutive5xx": 0}  # isolate retries here
    gw = await gateway(doc)
    for _ in range(8):
        async with gw.session.get(f"{gw.url}/x") as resp:
            assert resp.status == 200
            assert (await resp.json())["upstream"] == "good"
    assert bad.hits >= 1  # least-connections did try it
    statuses = []
    for _ in range(8):  # a POST carries a body: never retried
        async with gw.session.post(f"{gw.url}/x", data=b"1") as resp:
            statuses.append(resp.status)
    assert 503 in statuses and 200 in statuses
    assert "hexagon_gateway_retries_total" in await gw.metrics()


async def test_outlier_ejection_moves_traffic(gateway: Start, upstreams: Ups) -> None:
    bad, good = await upstreams("bad"), await upstreams("good")
    bad.status = 500
    doc = gateway_config({"pool": [bad.address, good.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "pool"}])  # fmt: skip
    doc["upstreams"][0]["outlierDetection"] = {
        "consecutive5xx": 2, "baseEjectionMs": 60000, "maxEjectionPercent": 50}  # fmt: skip
    gw = await gateway(doc)
    for _ in range(6):
        async with gw.session.get(f"{gw.url}/x") as resp:
            await resp.read()
    assert bad.hits == 2  # ejected after its second consecutive 500
    hits = good.hits
    for _ in range(10):
        async with gw.session.get(f"{gw.url}/x") as resp:
            assert resp.status == 200
    assert good.hits == hits + 10
    text = await gw.metrics()
    assert 'hexagon_gateway_outlier_ejections_total{hexagon_node="north"' in text
    assert 'upstream="pool"} 1' in text


async def test_connect_failures_retry_and_eject(gateway: Start, upstreams: Ups) -> None:
    good = await upstreams("good")
    dead = f"127.0.0.1:{free_port()}"
    doc = gateway_config({"pool": [dead, good.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "pool"}])  # fmt: skip
    doc["upstreams"][0]["retries"] = {"attempts": 2, "retryOn": ["connect-failure"]}
    doc["upstreams"][0]["outlierDetection"] = {"consecutiveConnectFailures": 1}
    gw = await gateway(doc)
    for _ in range(10):
        async with gw.session.get(f"{gw.url}/x") as resp:
            assert resp.status == 200
    runtime = gw.process.gateway.runtime
    assert runtime is not None and runtime.upstreams["pool"].pool.ejected_count() == 1


async def test_keep_alive_pool_reuses_connections(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a"}]))  # fmt: skip
    for _ in range(20):
        async with gw.session.get(f"{gw.url}/x") as resp:
            assert resp.status == 200
    pool = gw.process.gateway.pools[("127.0.0.1", up.port)]
    assert pool.opened == 1


async def test_streamed_download_unknown_length(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a"}]))  # fmt: skip
    for length in ("0", "1"):
        async with gw.session.get(f"{gw.url}/big?bytes=3000000&length={length}") as resp:
            assert resp.status == 200
            assert len(await resp.read()) == 3_000_000


async def test_websocket_pass_through(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a"}]))  # fmt: skip
    async with gw.session.ws_connect(f"{gw.url}/ws") as ws:
        await ws.send_str("hi")
        assert (await ws.receive()).data == "a:hi"
        await ws.send_bytes(b"abc")
        assert (await ws.receive()).data == b"cba"


async def test_middleware_route_runs_its_chain(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a",
         "middlewares": [{"type": "requestId"}]}]))  # fmt: skip
    async with gw.session.get(f"{gw.url}/x") as resp:
        assert resp.status == 200
        request_id = resp.headers["X-Request-Id"]
    assert up.seen_headers[-1].get("x-request-id") == request_id, up.seen_headers[-1]
    async with gw.session.get(f"{gw.url}/big?bytes=100000") as resp:  # streamed through the chain
        assert len(await resp.read()) == 100000 and "X-Request-Id" in resp.headers
    text = await gw.metrics()  # the chain's snapshot() is exported per route
    assert 'hexagon_gateway_requestid_generated_total{hexagon_node="north"' in text


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="malformed-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431,
                     id="oversized-header"),
        pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, id="cl-and-te"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                     400, id="duplicate-content-length"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\nContent-Length: 5\r\n\r\n", 400,
                     id="bare-lf"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n", 400, id="bad-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX : 1\r\n\r\n", 400, id="space-before-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400, id="nul-in-value"),
    ],
)  # fmt: skip
async def test_hostile_requests_are_refused(
    gateway: Start, upstreams: Ups, raw: bytes, status: int
) -> None:
    up = await upstreams("a")
    gw = await gateway(gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a"}]))  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.process.data_port)
    writer.write(raw)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    assert line.startswith(b"HTTP/1.") and int(line.split()[1]) == status, line
    assert up.hits == 0
    async with gw.session.get(f"{gw.url}/still-alive") as resp:
        assert resp.status == 200


async def test_first_byte_timeout_on_a_pooled_connection(gateway: Start, upstreams: Ups) -> None:
    """The second request finds an idle connection (callback mode); its timeout still holds."""
    up = await upstreams("a")
    doc = gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a",
         "timeouts": {"firstByteMs": 200}}])  # fmt: skip
    gw = await gateway(doc)
    async with gw.session.get(f"{gw.url}/warm") as resp:
        assert resp.status == 200
    up.delay = 5.0
    async with gw.session.get(f"{gw.url}/slow") as resp:
        assert resp.status == 504
        assert (await resp.json())["error"] == "upstream_timeout"
    up.delay = 0.0
    async with gw.session.get(f"{gw.url}/again") as resp:
        assert resp.status == 200
    assert gw.process.gateway.metrics.in_flight == 0


async def test_closed_idle_connection_is_not_reused(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a"}]))  # fmt: skip
    async with gw.session.get(f"{gw.url}/warm", headers={"Connection": "keep-alive"}) as resp:
        assert resp.status == 200
    pool = gw.process.gateway.pools[("127.0.0.1", up.port)]
    for conn in list(pool._idle):  # as if the upstream's keep-alive timer had fired
        assert conn.transport is not None
        conn.transport.abort()
    async with gw.session.get(f"{gw.url}/after-close") as resp:
        assert resp.status == 200


async def test_pipelined_requests_answered_in_order(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a"}]))  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.process.data_port)
    writer.write(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    data = await reader.read()  # until the gateway closes after the third response
    writer.close()
    paths = [p for p in (b"/one", b"/two", b"/three") if p in data]
    assert paths == [b"/one", b"/two", b"/three"]
    assert data.index(b"/one") < data.index(b"/two") < data.index(b"/three")
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert b'"len": 3' in data


async def test_expect_100_continue(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(gateway_config({"a": [up.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a"}]))  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.process.data_port)
    writer.write(
        b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 100")
    assert await reader.readline() == b"\r\n"
    writer.write(b"hello")
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    writer.close()
    assert up.received_bytes == 5
    assert "expect" not in up.seen_headers[-1]


async def test_load_is_shared_when_upstreams_close_connections(
    gateway: Start, upstreams: Ups
) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    gw = await gateway(gateway_config({"pool": [a.address, b.address]}, [
        {"name": "r", "match": {"pathPrefix": "/"}, "upstream": "pool"}]))  # fmt: skip
    for _ in range(10):
        async with gw.session.get(f"{gw.url}/x?close=1") as resp:
            assert resp.status == 200
    assert (a.hits, b.hits) == (5, 5)
