"""The one seam between the core and the per-route middlewares package.

The middlewares are owned by another package (`hexagon_gateway.middlewares`); the core only
needs its three entry points. Importing them here, behind one module, keeps the rest of the core
independent of whether that package is installed yet, and gives a single place for the
fallback: with no middlewares package, no middleware type is valid and chains are empty.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RouteMiddleware(Protocol):
    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse: ...


MIDDLEWARE_SCHEMAS: Mapping[str, Mapping[str, Any]]
build_chain: Callable[..., list[Any]]
snapshot: Callable[[Sequence[Any]], dict[str, float]]
_apply: Callable[[web.Request, web.StreamResponse], Awaitable[None]] | None

try:
    from hexagon_gateway.middlewares import (  # type: ignore[attr-defined,unused-ignore]
        MIDDLEWARE_SCHEMAS,
        apply_response_headers,
        build_chain,
        snapshot,
    )

    _apply = apply_response_headers
    AVAILABLE = True
except ImportError:  # the middlewares package is not there: no middleware type validates
    AVAILABLE = False
    _apply = None
    MIDDLEWARE_SCHEMAS = {}

    def build_chain(  # type: ignore[misc,unused-ignore]
        specs: Sequence[Mapping[str, Any]],
        *,
        route_name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> list[Any]:
        if specs:
            raise ValueError(
                f"routes[].middlewares[0].type: got {specs[0].get('type')!r}, "
                "expected no middlewares (middlewares package not installed)"
            )
        return []

    def snapshot(chain: Sequence[Any]) -> dict[str, float]:  # type: ignore[misc,unused-ignore]
        return {}


async def before_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Response headers middlewares queued (request ids...), for responses the proxy streams.

    The data port has no web.Application, so aiohttp's on_response_prepare signal never fires;
    the proxy calls this right before `prepare()` instead.
    """
    if _apply is not None:
        await _apply(request, response)


def compose(chain: Sequence[RouteMiddleware], terminal: Handler) -> Handler:
    """Fold a chain around the terminal handler once, so requests pay no per-call setup."""
    handler = terminal
    for middleware in reversed(chain):
        handler = _bind(middleware, handler)
    return handler


def _bind(middleware: RouteMiddleware, inner: Handler) -> Handler:
    async def call(request: web.Request) -> web.StreamResponse:
        return await middleware(request, inner)

    return call
