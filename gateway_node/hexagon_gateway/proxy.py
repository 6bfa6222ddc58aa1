"""The forwarding handler: one request in, one upstream exchange (or a few, on retry) out.

It runs at the end of each route's middleware chain. Bodies are streamed in both directions
with back-pressure (the upstream socket stops being read while the client is slow, and the
client's body is read only as fast as the upstream takes it), so memory stays flat whatever the
body size. Only requests without a body are retried, on a different endpoint, when the method is
idempotent, the failure is one the upstream's `retryOn` lists, and the retry budget allows.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from hexagon_gateway import balancer
from hexagon_gateway.config import IDEMPOTENT_METHODS
from hexagon_gateway.headers import TrustedPeers, request_head, response_headers
from hexagon_gateway.runtime import Gateway, RouteRuntime, UpstreamRuntime
from hexagon_gateway.upstream import (
    BodyTimeout,
    ConnectFailure,
    ConnectTimeout,
    FirstByteTimeout,
    ResetError,
    ResponseHead,
    UpstreamConnection,
    UpstreamError,
)

log = logging.getLogger("hexagon_gateway.proxy")

ROUTE_KEY = "hexagon.route"
PREFIX_KEY = "hexagon.prefix"
PATH_KEY = "hexagon.path"
QUERY_KEY = "hexagon.query"
UPSTREAM_KEY = "hexagon.upstream"
USED_UPSTREAM_KEY = "hexagon.upstream_used"
_READ_CHUNK = 256 * 1024


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = json.dumps({"error": code, "message": message, **extra}).encode()
    return web.Response(status=status, body=body, content_type="application/json")


class BodyTooLarge(Exception):
    pass


class Attempt(Exception):
    """One failed attempt; carries what to answer if there is no retry."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(str(error))
        self.error = error


_ERRORS: dict[type[UpstreamError], tuple[int, str]] = {
    ConnectFailure: (502, "upstream_connect_failure"),
    ConnectTimeout: (504, "upstream_connect_timeout"),
    FirstByteTimeout: (504, "upstream_timeout"),
    BodyTimeout: (504, "upstream_timeout"),
    ResetError: (502, "upstream_reset"),
}


def _outcome(error: UpstreamError) -> str:
    if isinstance(error, ConnectFailure | ConnectTimeout):
        return balancer.CONNECT_FAILURE
    return balancer.ERROR_5XX


def _retryable_error(error: UpstreamError, retry_on: frozenset[str]) -> bool:
    if isinstance(error, ConnectFailure | ConnectTimeout):
        return "connect-failure" in retry_on or "gateway-error" in retry_on or "5xx" in retry_on
    if isinstance(error, ResetError):
        return "reset" in retry_on or "5xx" in retry_on or "gateway-error" in retry_on
    return "5xx" in retry_on or "gateway-error" in retry_on  # timeouts


def _retryable_status(status: int, retry_on: frozenset[str]) -> bool:
    if status >= 500 and "5xx" in retry_on:
        return True
    return status in (502, 503, 504) and "gateway-error" in retry_on


class Proxy:
    """The terminal handler of every route; holds per-process caches only."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._trusted: TrustedPeers | None = None
        self._trusted_for: object = None
        self._ws_session: aiohttp.ClientSession | None = None

    def ws_session(self) -> aiohttp.ClientSession:
        """Only WebSocket tunnels use aiohttp's client; plain HTTP uses the lean pool."""
        if self._ws_session is None or self._ws_session.closed:
            self._ws_session = aiohttp.ClientSession(auto_decompress=False)
        return self._ws_session

    async def close(self) -> None:
        if self._ws_session is not None:
            await self._ws_session.close()

    def trusted(self) -> TrustedPeers:
        runtime = self.gateway.runtime
        nets = runtime.config.trusted_proxies if runtime is not None else ()
        if self._trusted is None or self._trusted_for is not nets:
            self._trusted = TrustedPeers(nets)
            self._trusted_for = nets
        return self._trusted

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        gateway = self.gateway
        runtime = gateway.runtime
        route: RouteRuntime = request[ROUTE_KEY]
        name = request.get(UPSTREAM_KEY) or route.route.upstream
        upstream = runtime.upstreams.get(name) if runtime is not None else None
        if upstream is None:
            return json_error(502, "unknown_upstream", f"upstream {name!r} is not configured")
        request[USED_UPSTREAM_KEY] = name
        length = request.content_length
        chunked = request.headers.get("Transfer-Encoding", "").lower().endswith("chunked")
        if length is not None and length > route.max_body:
            return json_error(413, "body_too_large", f"body exceeds {route.max_body} bytes")
        has_body = chunked or bool(length)
        upgrade = request.headers.get("Upgrade")
        if upgrade and "upgrade" in request.headers.get("Connection", "").lower():
            from hexagon_gateway.websocket import tunnel

            return await tunnel(self, request, upstream, route)
        if has_body and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        path = request.get(PATH_KEY, request.path)
        if route.route.strip_prefix:
            from hexagon_gateway.routing import strip_prefix

            path = strip_prefix(path, request.get(PREFIX_KEY, ""))
        qs = request.get(QUERY_KEY, "")
        peer = request.remote or ""
        head = request_head(
            method=request.method,
            target=path + "?" + qs if qs else path,
            raw_headers=request.raw_headers,
            peer=peer,
            trusted=peer in self.trusted(),
            scheme=request.scheme,
            chunked=chunked,
        )
        return await self._forward(request, upstream, route, head, has_body)

    async def _forward(
        self,
        request: web.Request,
        upstream: UpstreamRuntime,
        route: RouteRuntime,
        head: bytes,
        has_body: bool,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        timeouts = route.timeouts
        deadline = loop.time() + timeouts.total_ms / 1000.0
        pool = upstream.pool
        retries = upstream.config.retries
        can_retry = not has_body and request.method in IDEMPOTENT_METHODS
        attempts = 1 + (retries.attempts if can_retry else 0)
        tried: set[int] = set()
        last: web.StreamResponse | None = None
        metrics = self.gateway.metrics
        for attempt in range(attempts):
            is_retry = attempt > 0
            if is_retry:
                if not pool.retry_allowed() or loop.time() >= deadline:
                    break
                metrics.count_retry(upstream.config.name)
            ep = pool.pick(tried)
            if ep is None:
                if last is not None:
                    break
                return json_error(503, "no_healthy_upstream", "no endpoint can take the request")
            tried.add(ep.index)
            pool.start(ep, retry=is_retry)
            outcome = balancer.LOCAL_ERROR
            try:
                conn, rhead = await self._exchange(
                    request, ep.endpoint.host, ep.endpoint.port, head, has_body, route, deadline
                )
            except BodyTooLarge:
                pool.finish(ep, balancer.LOCAL_ERROR, retry=is_retry)
                return json_error(413, "body_too_large", f"body exceeds {route.max_body} bytes")
            except UpstreamError as error:
                outcome = _outcome(error)
                pool.finish(ep, outcome, retry=is_retry)
                metrics.count_upstream_error(upstream.config.name, error.kind)
                status, code = _ERRORS.get(type(error), (502, "upstream_error"))
                last = json_error(status, code, str(error) or code, endpoint=ep.endpoint.address)
                if attempt + 1 < attempts and _retryable_error(error, retries.retry_on):
                    continue
                return last
            except BaseException:
                pool.finish(ep, balancer.LOCAL_ERROR, retry=is_retry)
                raise
            status = rhead.status
            outcome = balancer.ERROR_5XX if status >= 500 else balancer.SUCCESS
            if (
                status >= 500
                and attempt + 1 < attempts
                and _retryable_status(status, retries.retry_on)
            ):
                pool.finish(ep, outcome, retry=is_retry)
                if rhead.body is not None:
                    conn.finish()
                else:
                    conn.close()
                continue
            try:
                return await self._respond(request, conn, rhead, deadline)
            finally:
                pool.finish(ep, outcome, retry=is_retry)
        assert last is not None
        return last

    async def _exchange(
        self,
        request: web.Request,
        host: str,
        port: int,
        head: bytes,
        has_body: bool,
        route: RouteRuntime,
        deadline: float,
    ) -> tuple[UpstreamConnection, ResponseHead]:
        loop = asyncio.get_running_loop()
        timeouts = route.timeouts
        pool = self.gateway.endpoint_pool(host, port)
        head_only = request.method == "HEAD"
        for fresh in (False, True):
            connect_deadline = min(deadline, loop.time() + timeouts.connect_ms / 1000.0)
            conn = await (pool._open(connect_deadline) if fresh else pool.acquire(connect_deadline))
            try:
                conn.send(head, head_only=head_only)
                if has_body:
                    await self._send_body(request, conn, route.max_body, deadline)
                first_byte = min(deadline, loop.time() + timeouts.first_byte_ms / 1000.0)
                return conn, await conn.read_head(first_byte)
            except ResetError:
                conn.close()
                # A keep-alive connection the upstream closed while idle: resend once on a new
                # one. Safe because nothing of the request body can have been consumed.
                if fresh or not conn.reused or has_body:
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    async def _send_body(
        self, request: web.Request, conn: UpstreamConnection, limit: int, deadline: float
    ) -> None:
        chunked = request.headers.get("Transfer-Encoding", "").lower().endswith("chunked")
        sent = 0
        content = request.content
        async with asyncio.timeout_at(deadline):
            while True:
                data = await content.readany()
                if not data:
                    break
                sent += len(data)
                if sent > limit:
                    raise BodyTooLarge()
                if chunked:
                    await conn.write(b"%x\r\n%b\r\n" % (len(data), data))
                else:
                    await conn.write(data)
        if chunked:
            await conn.write(b"0\r\n\r\n")

    async def _respond(
        self,
        request: web.Request,
        conn: UpstreamConnection,
        rhead: ResponseHead,
        deadline: float,
    ) -> web.StreamResponse:
        headers = response_headers(rhead.headers)
        body = rhead.body
        if body is not None and request.method != "HEAD" and rhead.status not in (204, 304):
            conn.finish()
            return web.Response(
                status=rhead.status, reason=rhead.reason, body=body, headers=headers
            )
        resp = web.StreamResponse(status=rhead.status, reason=rhead.reason, headers=headers)
        if rhead.length is not None:
            resp.content_length = rhead.length
        try:
            await resp.prepare(request)
            if body is None:
                while True:
                    data = await conn.read(deadline)
                    if not data:
                        break
                    await resp.write(data)
            await resp.write_eof()
        except (UpstreamError, ConnectionError, asyncio.CancelledError) as exc:
            # Headers are out: the only honest signal left is to cut the client connection.
            conn.close()
            if request.transport is not None:
                request.transport.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning(
                "response aborted mid-stream", extra={"error": str(exc), "kind": type(exc).__name__}
            )
            return resp
        conn.finish()
        return resp
