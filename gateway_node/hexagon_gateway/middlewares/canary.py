"""Canary routing: send part of a route's traffic to another upstream (aiohttp adapter).

The choice is made by ``canary_core.choose`` and published to the gateway core by setting
``request["hexagon.upstream"]``; the proxy handler honours that key and otherwise uses the
route's own upstream. Requests that stay on the stable side leave the key untouched.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from ._http import client_address
from .canary_core import CanaryRule, Match, choose, parse_sticky_key
from .schemas import OptionError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UPSTREAM_KEY = "hexagon.upstream"


def _match(field: str, spec: Mapping[str, str] | None, *, lower: bool) -> Match | None:
    if spec is None:
        return None
    try:
        name, value = spec["name"], spec["value"]
    except KeyError as exc:
        raise OptionError(field, dict(spec), "{name: ..., value: ...}") from exc
    return Match(name.lower() if lower else name, value)


class Canary:
    kind = "canary"

    def __init__(
        self,
        *,
        upstream: str,
        weight: float = 0.0,
        header: Mapping[str, str] | None = None,
        cookie: Mapping[str, str] | None = None,
        sticky_key: str | None = None,
        route_name: str = "",
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0 <= weight <= 100:
            raise OptionError("weight", weight, "a percentage between 0 and 100")
        if weight == 0 and header is None and cookie is None:
            raise OptionError("weight", weight, "> 0, or a header or cookie match")
        sticky = None
        if sticky_key is not None:
            try:
                sticky = parse_sticky_key(sticky_key)
            except ValueError as exc:
                raise OptionError("stickyKey", sticky_key, str(exc)) from exc
        self.rule = CanaryRule(
            upstream=upstream,
            weight=float(weight),
            header=_match("header", header, lower=True),
            cookie=_match("cookie", cookie, lower=False),
            sticky=sticky,
        )
        self._rand = rand
        self.canary_total = 0
        self.stable_total = 0

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        choice = choose(
            self.rule,
            headers=request.headers,
            cookies=request.cookies,
            client=client_address(request),
            rand=self._rand,
        )
        if choice.canary:
            request[UPSTREAM_KEY] = self.rule.upstream
            self.canary_total += 1
        else:
            self.stable_total += 1
        return await handler(request)

    def metrics(self) -> dict[str, float]:
        return {
            "canary_selected_total": float(self.canary_total),
            "canary_stable_total": float(self.stable_total),
        }
