"""aiohttp plumbing shared by the middleware adapters: JSON error replies and response hooks.

Middlewares run around the proxy handler, which streams: by the time it returns, its response
has usually been prepared and its headers sent. So middlewares never edit the returned response;
they queue headers on the request, and ``apply_response_headers`` (installed by the gateway core
as an ``on_response_prepare`` signal handler) adds them just before the headers go out. For an
unprepared response the adapters also apply them directly, so either path works.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

RESPONSE_HOOKS = "hexagon.response_hooks"
CLIENT_IP = "hexagon.client_ip"


class ResponseHooks:
    """What middlewares want done to the response just before its headers go out."""

    __slots__ = ("callbacks", "headers")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        # Run once, when the response is prepared: the breaker uses this to time the first
        # byte, so a slow client downloading a large body does not count as a slow upstream.
        self.callbacks: list[Callable[[], None]] = []


def response_hooks(request: web.BaseRequest) -> ResponseHooks:
    """The request's hooks (created on first use).

    The object is shared by ``request.clone()`` copies of the request state, which is why
    it must exist before any middleware clones the request.
    """
    hooks: ResponseHooks | None = request.get(RESPONSE_HOOKS)
    if hooks is None:
        hooks = ResponseHooks()
        request[RESPONSE_HOOKS] = hooks
    return hooks


def queued_headers(request: web.BaseRequest) -> list[tuple[str, str]]:
    return response_hooks(request).headers


async def apply_response_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook (or called by the proxy right before ``prepare()``): add the
    queued headers and run the callbacks.

    aiohttp runs the signal inside ``prepare()``, after the response counts as prepared but
    before its headers are written, so no ``prepared`` check here.
    """
    hooks: ResponseHooks | None = request.get(RESPONSE_HOOKS)
    if hooks is None:
        return
    for name, value in hooks.headers:
        response.headers[name] = value
    if hooks.callbacks:
        callbacks, hooks.callbacks = hooks.callbacks, []
        for callback in callbacks:
            callback()


def finish(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    """Apply queued headers to a response that has not been sent yet."""
    if not response.prepared:
        hooks: ResponseHooks | None = request.get(RESPONSE_HOOKS)
        if hooks is not None:
            for name, value in hooks.headers:
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
