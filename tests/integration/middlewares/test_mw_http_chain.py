"""Request ids, rate limits, canary and breaker over real HTTP on 127.0.0.1.

A real aiohttp server runs the chain built by ``build_chain`` around a trivial terminal handler
(standing in for the proxy) that echoes what it received; a real aiohttp client talks to it.
Time-dependent behaviour runs on a fake clock that the test (or the handler) advances.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from hexagon_gateway.middlewares import (
    RouteMiddleware,
    apply_response_headers,
    build_chain,
    snapshot,
)
from hexagon_gateway.middlewares.trace_core import parse_traceparent
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE}-00f067aa0ba902b7-01"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def compose(chain: Sequence[RouteMiddleware], terminal: Handler) -> Handler:
    handler = terminal
    for middleware in reversed(chain):

        def bind(mw: RouteMiddleware, inner: Handler) -> Handler:
            async def call(request: web.Request) -> web.StreamResponse:
                return await mw(request, inner)

            return call

        handler = bind(middleware, handler)
    return handler


async def echo(request: web.Request) -> web.StreamResponse:
    """Terminal handler: what the proxy would have seen."""
    return web.json_response(
        {
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "upstream": request.get("hexagon.upstream"),
            "request_id": request.get("hexagon.request_id"),
        }
    )


async def streaming_echo(request: web.Request) -> web.StreamResponse:
    """Like the real proxy: prepares (sends headers) before returning."""
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(json.dumps({"request_id": request.get("hexagon.request_id")}).encode())
    await response.write_eof()
    return response


@asynccontextmanager
async def serving(chain: Sequence[RouteMiddleware], terminal: Handler = echo) -> AsyncIterator[str]:
    async def client_ip_from_test_header(request: web.Request) -> web.StreamResponse:
        # Stands in for the core, which stores the trusted forwarded client here.
        forwarded = request.headers.get("x-test-client")
        if forwarded:
            request["hexagon.client_ip"] = forwarded
        return await compose(chain, terminal)(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", client_ip_from_test_header)
    app.on_response_prepare.append(apply_response_headers)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def get(
    base: str, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + path, headers=headers or {}) as response,
    ):
        body = await response.json(content_type=None)
        return response.status, CIMultiDict(response.headers), body


# -- request id and trace context --------------------------------------------------------------
async def test_request_id_generated_forwarded_and_echoed() -> None:
    async with serving(build_chain([{"type": "requestId"}], route_name="r")) as base:
        status, headers, body = await get(base)
    assert status == 200
    rid = headers["X-Request-Id"]
    assert re.fullmatch("[0-9a-f]{32}", rid)
    assert body["headers"]["x-request-id"] == rid == body["request_id"]
    upstream = parse_traceparent(body["headers"]["traceparent"])
    assert upstream is not None and upstream.flags == "00"


async def test_incoming_ids_kept_and_trace_continued() -> None:
    async with serving(build_chain([{"type": "requestId"}], route_name="r")) as base:
        _, headers, body = await get(
            base,
            headers={"X-Request-Id": "abc-123", "traceparent": INCOMING, "tracestate": "k=v"},
        )
    assert headers["X-Request-Id"] == "abc-123"
    upstream = parse_traceparent(body["headers"]["traceparent"])
    assert upstream is not None
    assert (upstream.trace_id, upstream.flags) == (TRACE, "01")
    assert upstream.parent_id != "00f067aa0ba902b7"
    assert body["headers"]["tracestate"] == "k=v"


async def test_invalid_incoming_ids_replaced_and_tracestate_dropped() -> None:
    async with serving(build_chain([{"type": "requestId"}], route_name="r")) as base:
        _, headers, body = await get(
            base,
            headers={"X-Request-Id": "bad id!", "traceparent": "garbage", "tracestate": "k=v"},
        )
    assert headers["X-Request-Id"] != "bad id!"
    assert parse_traceparent(body["headers"]["traceparent"]) is not None
    assert "tracestate" not in body["headers"]


async def test_request_id_on_streamed_response_via_prepare_hook() -> None:
    chain = build_chain([{"type": "requestId"}], route_name="r")
    async with serving(chain, streaming_echo) as base:
        _, headers, body = await get(base)
    assert headers["X-Request-Id"] == body["request_id"]


async def test_request_id_on_a_response_made_by_an_inner_middleware() -> None:
    chain = build_chain(
        [{"type": "requestId"}, {"type": "rateLimit", "requestsPerSecond": 1, "burst": 1}],
        route_name="r",
        clock=Clock(),
    )
    async with serving(chain) as base:
        await get(base)
        status, headers, _ = await get(base)
    assert status == 429
    assert "X-Request-Id" in headers


# -- rate limit ---------------------------------------------------------------------------------
async def test_rate_limit_answers_429_with_retry_after_and_recovers() -> None:
    clock = Clock()
    chain = build_chain(
        [{"type": "rateLimit", "requestsPerSecond": 0.5, "burst": 2}], route_name="r", clock=clock
    )
    async with serving(chain) as base:
        first = await get(base)
        second = await get(base)
        status, headers, body = await get(base)
        assert (first[0], second[0], status) == (200, 200, 429)
        assert first[1]["RateLimit-Limit"] == "2"
        assert (first[1]["RateLimit-Remaining"], second[1]["RateLimit-Remaining"]) == ("1", "0")
        assert headers["Retry-After"] == "2"
        assert headers["RateLimit-Remaining"] == "0"
        assert body == {"error": "rate_limited", "route": "r", "retryAfterSeconds": 2}
        clock.now += 2
        assert (await get(base))[0] == 200
    assert snapshot(chain)["ratelimit_rejected_total"] == 1


async def test_rate_limit_keys_by_forwarded_client_and_by_header() -> None:
    clock = Clock()
    by_client = build_chain(
        [{"type": "rateLimit", "requestsPerSecond": 1, "burst": 1}], route_name="r", clock=clock
    )
    async with serving(by_client) as base:
        assert (await get(base, headers={"x-test-client": "10.0.0.1"}))[0] == 200
        assert (await get(base, headers={"x-test-client": "10.0.0.1"}))[0] == 429
        assert (await get(base, headers={"x-test-client": "10.0.0.2"}))[0] == 200
    by_header = build_chain(
        [{"type": "rateLimit", "requestsPerSecond": 1, "burst": 1, "key": "header:x-api-key"}],
        route_name="r",
        clock=clock,
    )
    async with serving(by_header) as base:
        assert (await get(base, headers={"x-api-key": "a"}))[0] == 200
        assert (await get(base, headers={"x-api-key": "a"}))[0] == 429
        assert (await get(base, headers={"x-api-key": "b"}))[0] == 200
        assert (await get(base))[0] == 200  # no key: falls back to the client address


async def test_rate_limit_per_route_shares_one_bucket() -> None:
    chain = build_chain(
        [{"type": "rateLimit", "requestsPerSecond": 1, "burst": 1, "key": "route"}],
        route_name="r",
        clock=Clock(),
    )
    async with serving(chain) as base:
        assert (await get(base, headers={"x-test-client": "10.0.0.1"}))[0] == 200
        assert (await get(base, headers={"x-test-client": "10.0.0.2"}))[0] == 429


# -- canary -------------------------------------------------------------------------------------
async def test_canary_by_header_cookie_and_sticky_key() -> None:
    chain = build_chain(
        [
            {
                "type": "canary",
                "upstream": "api-v2",
                "weight": 50,
                "header": {"name": "X-Canary", "value": "1"},
                "cookie": {"name": "canary", "value": "yes"},
                "stickyKey": "header:x-user",
            }
        ],
        route_name="r",
    )
    async with serving(chain) as base:
        assert (await get(base, headers={"x-canary": "1", "x-user": "z"}))[2][
            "upstream"
        ] == "api-v2"
        assert (await get(base, headers={"Cookie": "canary=yes"}))[2]["upstream"] == "api-v2"
        sides = {}
        for i in range(40):
            sides[i] = (await get(base, headers={"x-user": f"user-{i}"}))[2]["upstream"]
        assert set(sides.values()) == {"api-v2", None}
        for i in range(40):
            assert (await get(base, headers={"x-user": f"user-{i}"}))[2]["upstream"] == sides[i]
    stats = snapshot(chain)
    assert stats["canary_selected_total"] + stats["canary_stable_total"] == 82


# -- circuit breaker ----------------------------------------------------------------------------
BREAKER = {
    "type": "circuitBreaker",
    "maxConcurrent": 3,
    "p99Ms": 100,
    "windowSeconds": 10,
    "minRequests": 5,
    "openSeconds": 5,
    "halfOpenRequests": 2,
}


def slow_by_query(clock: Clock) -> Handler:
    """Simulated upstream latency: the handler advances the fake clock by ?ms=N."""

    async def handler(request: web.Request) -> web.StreamResponse:
        clock.now += int(request.query.get("ms", "1")) / 1000
        return web.json_response({"ok": True}, status=int(request.query.get("status", "200")))

    return handler


async def test_breaker_opens_on_p99_rejects_then_recovers_through_half_open() -> None:
    clock = Clock()
    chain = build_chain([BREAKER], route_name="r", clock=clock)
    async with serving(chain, slow_by_query(clock)) as base:
        for _ in range(4):
            assert (await get(base, "/?ms=5"))[0] == 200
        assert (await get(base, "/?ms=500"))[0] == 200  # 1 slow of 5: P99 now above 100 ms
        status, headers, body = await get(base)
        assert status == 503
        assert headers["x-hexagon-breaker"] == "open"
        assert headers["Retry-After"] == "5"
        assert body["error"] == "circuit_open"
        assert snapshot(chain)["breaker_state"] == 2
        clock.now += 5
        assert snapshot(chain)["breaker_state"] == 1
        assert (await get(base, "/?ms=5"))[0] == 200
        assert (await get(base, "/?ms=5"))[0] == 200
        assert snapshot(chain)["breaker_state"] == 0
        assert (await get(base, "/?ms=5"))[0] == 200


async def test_breaker_error_share_trips_on_upstream_5xx() -> None:
    clock = Clock()
    chain = build_chain([{**BREAKER, "errorPercent": 50}], route_name="r", clock=clock)
    async with serving(chain, slow_by_query(clock)) as base:
        for _ in range(3):
            assert (await get(base, "/?status=502"))[0] == 502
        for _ in range(2):
            assert (await get(base))[0] == 200
        status, headers, _ = await get(base)
    assert (status, headers["x-hexagon-breaker"]) == (503, "open")


async def test_breaker_sheds_over_max_concurrent_immediately() -> None:
    release = asyncio.Event()
    entered = asyncio.Semaphore(0)

    async def parked(request: web.Request) -> web.StreamResponse:
        entered.release()
        await release.wait()
        return web.json_response({"ok": True})

    chain = build_chain([BREAKER], route_name="r", clock=Clock())
    async with serving(chain, parked) as base:
        held = [asyncio.ensure_future(get(base)) for _ in range(3)]
        for _ in range(3):
            await entered.acquire()
        assert snapshot(chain)["breaker_inflight"] == 3
        status, headers, body = await get(base)
        assert (status, headers["x-hexagon-breaker"], body["reason"]) == (
            503,
            "open",
            "max_concurrent",
        )
        release.set()
        assert [r[0] for r in await asyncio.gather(*held)] == [200, 200, 200]
        assert (await get(base))[0] == 200
    assert snapshot(chain)["breaker_state"] == 0


async def test_keys_set_behind_request_id_reach_the_core_request() -> None:
    """The core holds the original request; canary runs on request-id's clone of it."""
    chain = build_chain(
        [
            {"type": "requestId"},
            {"type": "canary", "upstream": "api-v2", "header": {"name": "x-canary", "value": "1"}},
        ],
        route_name="r",
    )
    seen: dict[str, Any] = {}

    async def core(request: web.Request) -> web.StreamResponse:
        response = await compose(chain, echo)(request)
        seen.update(upstream=request.get("hexagon.upstream"), rid=request["hexagon.request_id"])
        return response

    app = web.Application()
    app.router.add_get("/", core)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        _, headers, body = await get(f"http://{host}:{port}", headers={"x-canary": "1"})
    finally:
        await runner.cleanup()
    assert body["upstream"] == seen["upstream"] == "api-v2"
    assert seen["rid"] == headers["X-Request-Id"]


def streaming_with_latency(clock: Clock) -> Handler:
    """Upstream time to first byte ?ttfb=ms, then a client download taking ?download=ms."""

    async def handler(request: web.Request) -> web.StreamResponse:
        clock.now += int(request.query.get("ttfb", "1")) / 1000
        response = web.StreamResponse()
        await response.prepare(request)
        clock.now += int(request.query.get("download", "0")) / 1000
        await response.write(b'{"ok": true}')
        await response.write_eof()
        return response

    return handler


async def test_breaker_times_the_first_byte_of_streamed_responses() -> None:
    clock = Clock()
    chain = build_chain([BREAKER], route_name="r", clock=clock)
    async with serving(chain, streaming_with_latency(clock)) as base:
        for _ in range(5):
            assert (await get(base, "/?ttfb=5&download=500"))[0] == 200
        assert snapshot(chain)["breaker_state"] == 0  # slow clients, healthy upstream
        assert (await get(base, "/?ttfb=500"))[0] == 200  # one slow first byte in six
        assert snapshot(chain)["breaker_state"] == 2
