"""The forwarding handler on aiohttp's side: one web.Request in, a streamed response out.

It runs at the end of each route's middleware chain (the fast path has its own answering in
answer.py/express.py; both use forward.py for the exchange itself). Bodies are streamed in both
directions with back-pressure (the upstream socket stops being read while the client is slow,
and the client's body is read only as fast as the upstream takes it), so memory stays flat
whatever the body size. Only requests without a body are retried, on a different endpoint, when
the method is idempotent, the failure is one the upstream's `retryOn` lists, and the retry
budget allows.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from hexagon_gateway.chains import before_prepare
from hexagon_gateway.forward import Failure, forward
from hexagon_gateway.headers import TrustedPeers, request_head, response_headers
from hexagon_gateway.runtime import Gateway, RouteRuntime
from hexagon_gateway.upstream import ResponseHead, UpstreamConnection, UpstreamError

log = logging.getLogger("hexagon_gateway.proxy")

ROUTE_KEY = "hexagon.route"
PREFIX_KEY = "hexagon.prefix"
PATH_KEY = "hexagon.path"
QUERY_KEY = "hexagon.query"
UPSTREAM_KEY = "hexagon.upstream"
USED_UPSTREAM_KEY = "hexagon.upstream_used"


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = json.dumps({"error": code, "message": message, **extra}).encode()
    return web.Response(status=status, body=body, content_type="application/json")


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
        content = request.content
        result = await forward(
            self.gateway,
            upstream,
            route,
            method=request.method,
            head=head,
            body=content.readany if has_body else None,
            chunked=chunked,
        )
        if isinstance(result, Failure):
            return web.Response(
                status=result.status, body=result.body(), content_type="application/json"
            )
        try:
            return await self._respond(request, result.conn, result.head, result.deadline)
        finally:
            result.done()

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
            await before_prepare(request, resp)
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
