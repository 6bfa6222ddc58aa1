"""aiohttp's side of the data port: the server that handed-over connections continue on.

The fast front end (fastpath.py) owns every connection first and hands to this server whatever
it does not handle itself: routes with middlewares, chunked bodies, upgrades, irregular heads
(or all traffic, with HEXAGON_FASTPATH=0). The low-level `web.Server` skips the URL dispatcher
and application middleware machinery, which a gateway does not need (it has its own routing
table), and which cost a measurable share of every request. Parse errors are answered as JSON
with the status a client can act on: 431 for oversized or too many headers, 400 for malformed
request lines and ambiguous framing such as Content-Length together with Transfer-Encoding
(rejected by aiohttp's llhttp parser, never forwarded, so no request smuggling through the
gateway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from hexagon_gateway.headers import client_ip
from hexagon_gateway.proxy import (
    PATH_KEY,
    PREFIX_KEY,
    QUERY_KEY,
    ROUTE_KEY,
    USED_UPSTREAM_KEY,
    Proxy,
    json_error,
)
from hexagon_gateway.routing import normalize_path
from hexagon_gateway.runtime import Gateway, RouteRuntime

log = logging.getLogger("hexagon_gateway.server")
CLIENT_IP_KEY = "hexagon.client_ip"  # read by the middlewares (rate limit keys, logs)


class _DataProtocol(RequestHandler):  # type: ignore[type-arg,unused-ignore]
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc)
        ):
            status, code = 431, "request_header_fields_too_large"
        elif isinstance(exc, BadHttpMessage):
            status, code = 400, "bad_request"
        else:
            code = "internal_error"
            log.error("unhandled error", exc_info=exc)
        body = json.dumps({"error": code, "message": message or str(exc or code)[:200]})
        resp = web.Response(status=status, text=body, content_type="application/json")
        resp.force_close()
        return resp


class DataServer(web.Server):  # type: ignore[type-arg,unused-ignore]
    def __call__(self) -> RequestHandler:  # type: ignore[type-arg,unused-ignore]
        return _DataProtocol(self, loop=self._loop, **self._kwargs)


def _make_request(
    message: Any,
    payload: Any,
    protocol: Any,
    writer: Any,
    task: asyncio.Task[None],
    _cls: type[web.Request] = web.Request,
) -> web.Request:
    # web.Request rather than BaseRequest: the middlewares' contract is typed on web.Request.
    return _cls(message, payload, protocol, writer, task, protocol._loop)


class DataHandler:
    """Entry point of every data request: faults, limits, routing, metrics."""

    def __init__(self, gateway: Gateway, proxy: Proxy) -> None:
        self.gateway = gateway
        self.proxy = proxy

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        assert isinstance(request, web.Request)  # our request_factory makes only these
        metrics = self.gateway.metrics
        metrics.in_flight += 1
        start = time.perf_counter()
        code = 500
        try:
            resp = await self._handle(request)
            code = resp.status
            return resp
        except (asyncio.CancelledError, ConnectionError):
            code = 499  # the client went away (nginx's convention)
            raise
        finally:
            metrics.in_flight -= 1
            route: RouteRuntime | None = request.get(ROUTE_KEY)
            metrics.observe(
                route=route.route.name if route is not None else "",
                upstream=request.get(USED_UPSTREAM_KEY, ""),
                code=code,
                seconds=time.perf_counter() - start,
            )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        gateway = self.gateway
        runtime = gateway.runtime
        if runtime is None:
            return json_error(503, "no_config", "the gateway has no valid config yet")
        faults = gateway.faults
        if faults.active:
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000.0)
            if faults.should_fail():
                return json_error(faults.error_code, "injected_fault", "fault injection")
        limits = runtime.config.limits
        size = 0
        for name, value in request.raw_headers:
            size += len(name) + len(value) + 4
        if size > limits.max_header_bytes:
            resp = json_error(431, "request_header_fields_too_large", "headers too large")
            resp.force_close()
            return resp
        raw_path, _, query = request.raw_path.partition("?")
        path = normalize_path(raw_path) if raw_path.startswith("/") else None
        if path is None:
            return json_error(400, "bad_path", "the request path is not a valid origin-form path")
        match = runtime.table.match(request.method, path, request.headers.get)
        if match is None:
            return json_error(404, "no_route", f"no route matches {request.method} {path}")
        route = match.target
        if route.chain:
            peer = request.remote or ""
            trusted = self.proxy.trusted()
            request[CLIENT_IP_KEY] = client_ip(
                peer, request.headers.get("X-Forwarded-For"), trusted
            )
        request[ROUTE_KEY] = route
        request[PATH_KEY] = path
        request[QUERY_KEY] = query
        request[PREFIX_KEY] = match.prefix
        assert route.handler is not None
        return await route.handler(request)


def make_server(gateway: Gateway) -> DataServer:
    proxy = Proxy(gateway)
    gateway.terminal = proxy
    max_field = 16384
    if gateway.runtime is not None:
        max_field = gateway.runtime.config.limits.max_header_bytes
    return DataServer(
        DataHandler(gateway, proxy),
        request_factory=_make_request,
        max_line_size=max_field,
        max_field_size=max_field,
        access_log=None,
    )
