"""Per-route middlewares of the gateway: the contract the gateway core builds chains from.

``build_chain`` turns a route's ``middlewares:`` list (camelCase options, see the config format)
into callables run around the proxy handler in order; it validates every option first and raises
``ValueError`` naming ``routes[<route>].middlewares[<i>].<field>``, the value and what was
expected. ``MIDDLEWARE_SCHEMAS`` holds the JSON schema of each type for the config validator, and
``snapshot`` sums the counters of a chain for the admin port. Request keys shared with the core:
``hexagon.upstream`` (set by canary), ``hexagon.request_id``, ``hexagon.client_ip`` (read).

Middlewares never edit a response the handler already streamed; they queue headers that
``apply_response_headers`` adds when the core registers it in ``app.on_response_prepare``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from ._http import apply_response_headers
from .breaker import CircuitBreaker
from .canary import Canary
from .jwt import JwtAuth
from .ratelimit import RateLimit
from .requestid import RequestId
from .schemas import MIDDLEWARE_SCHEMAS, OptionError, check_schema

__all__ = [
    "MIDDLEWARE_SCHEMAS",
    "Handler",
    "RouteMiddleware",
    "apply_response_headers",
    "build_chain",
    "snapshot",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RouteMiddleware(Protocol):
    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse: ...


@runtime_checkable
class _Observable(Protocol):
    def metrics(self) -> dict[str, float]: ...


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _build_one(
    spec: Mapping[str, Any], *, route_name: str, clock: Callable[[], float]
) -> RouteMiddleware:
    kind = spec["type"]
    options = {_snake(key): value for key, value in spec.items() if key != "type"}
    if kind == "requestId":
        return RequestId(**options)
    if kind == "jwt":
        return JwtAuth(**options, route_name=route_name, clock=clock)
    if kind == "rateLimit":
        return RateLimit(**options, route_name=route_name, clock=clock)
    if kind == "circuitBreaker":
        return CircuitBreaker(**options, route_name=route_name, clock=clock)
    if kind == "canary":
        return Canary(**options, route_name=route_name)
    raise AssertionError(f"unreachable: schema admitted unknown type {kind!r}")


def build_chain(
    specs: Sequence[Mapping[str, Any]],
    *,
    route_name: str,
    clock: Callable[[], float] = time.monotonic,
) -> list[RouteMiddleware]:
    """Validate and build a route's middlewares, outermost first."""
    chain: list[RouteMiddleware] = []
    for index, spec in enumerate(specs):
        prefix = f"routes[{route_name}].middlewares[{index}]"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{prefix}: got {spec!r}, expected a mapping with a 'type' key")
        kind = spec.get("type")
        if kind not in MIDDLEWARE_SCHEMAS:
            raise ValueError(
                f"{prefix}.type: got {kind!r}, expected one of {sorted(MIDDLEWARE_SCHEMAS)}"
            )
        try:
            check_schema(str(kind), spec)
            chain.append(_build_one(spec, route_name=route_name, clock=clock))
        except OptionError as exc:
            raise exc.at(prefix) from None
    return chain


def snapshot(chain: Sequence[RouteMiddleware]) -> dict[str, float]:
    """Counters and gauges of a chain, summed by name (a chain rarely has two of a kind).

    ``breaker_state`` is 0 closed, 1 half-open, 2 open; with several breakers the worst wins.
    """
    totals: dict[str, float] = {}
    for middleware in chain:
        if not isinstance(middleware, _Observable):
            continue
        for name, value in middleware.metrics().items():
            if name == "breaker_state":
                totals[name] = max(totals.get(name, 0.0), value)
            else:
                totals[name] = totals.get(name, 0.0) + value
    return totals
