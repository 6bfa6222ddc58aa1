"""aiohttp plumbing shared by the middleware adapters: JSON error replies and response headers.

Middlewares run around the proxy handler, which streams: by the time it returns, its response
has usually been prepared and its headers sent. So middlewares never edit the returned response;
they queue headers on the request, and ``apply_response_headers`` (installed by the gateway core
as an ``on_response_prepare`` signal handler) adds them just before the headers go out. For an
unprepared response the adapters also apply them directly, so either path works.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

RESPONSE_HEADERS = "hexagon.response_headers"
CLIENT_IP = "hexagon.client_ip"


def queued_headers(request: web.BaseRequest) -> list[tuple[str, str]]:
    """The request's queue of extra response headers (created on first use).

    The list object is shared by ``request.clone()`` copies of the request state, which is why
    it must exist before any middleware clones the request.
    """
    queue: list[tuple[str, str]] | None = request.get(RESPONSE_HEADERS)
    if queue is None:
        queue = []
        request[RESPONSE_HEADERS] = queue
    return queue


async def apply_response_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: copy queued headers onto the response (idempotent).

    aiohttp runs the hook inside ``prepare()``, after the response counts as prepared but
    before its headers are written, so no ``prepared`` check here.
    """
    queue: list[tuple[str, str]] | None = request.get(RESPONSE_HEADERS)
    if queue:
        for name, value in queue:
            response.headers[name] = value


def finish(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    """Apply queued headers to a response that has not been sent yet."""
    if not response.prepared:
        queue: list[tuple[str, str]] | None = request.get(RESPONSE_HEADERS)
        if queue:
            for name, value in queue:
                response.headers[name] = value
    return response


def client_address(request: web.BaseRequest) -> str:
    """The client as the core determined it (trusted forwarding), else the socket peer."""
    forwarded = request.get(CLIENT_IP)
    if isinstance(forwarded, str) and forwarded:
        return forwarded
    return request.remote or ""


def json_error(
    status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )
