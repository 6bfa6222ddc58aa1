"""Token-bucket rate limiting per client, per route or per header value (aiohttp adapter).

The arithmetic is in ``ratelimit_core``; this module picks the bucket key for a request and
turns a rejection into ``429`` with ``Retry-After`` and the ``RateLimit-*`` headers of the IETF
httpapi draft (limit = burst, remaining tokens, seconds until the bucket is full again).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ._http import client_address, finish, json_error, queued_headers
from .ratelimit_core import Clock, TokenBucketTable, header_seconds
from .schemas import OptionError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RateLimit:
    kind = "rateLimit"

    def __init__(
        self,
        *,
        requests_per_second: float,
        burst: int | None = None,
        key: str = "client",
        max_keys: int = 100_000,
        route_name: str = "",
        clock: Clock = time.monotonic,
    ) -> None:
        if not requests_per_second > 0:
            raise OptionError("requestsPerSecond", requests_per_second, "a number > 0")
        # Default burst: one second's worth of requests, at least one.
        burst = burst if burst is not None else max(1, math.ceil(requests_per_second))
        if burst < 1:
            raise OptionError("burst", burst, "an integer >= 1")
        if key == "client" or key == "route":
            self._header: str | None = None
        elif key.startswith("header:") and len(key) > len("header:"):
            self._header = key[len("header:") :]
        else:
            raise OptionError("key", key, "client, route or header:<name>")
        self._key_kind = key
        self._route = route_name
        self.table = TokenBucketTable(
            rate=float(requests_per_second), burst=burst, max_keys=max_keys, clock=clock
        )

    def bucket_key(self, request: web.Request) -> str:
        if self._key_kind == "route":
            return "route"
        if self._header is not None:
            value = request.headers.get(self._header)
            if value:
                return "h:" + value
            # Without the header, fall back to the client so anonymous callers cannot share
            # (and exhaust) one bucket for everybody.
        return "c:" + client_address(request)

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        decision = self.table.take(self.bucket_key(request))
        limit = str(self.table.burst)
        if not decision.allowed:
            wait = str(max(1, header_seconds(decision.retry_after)))
            return json_error(
                429,
                {"error": "rate_limited", "route": self._route, "retryAfterSeconds": int(wait)},
                headers={
                    "Retry-After": wait,
                    "RateLimit-Limit": limit,
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": wait,
                },
            )
        queue = queued_headers(request)
        queue.append(("RateLimit-Limit", limit))
        queue.append(("RateLimit-Remaining", str(decision.remaining)))
        queue.append(("RateLimit-Reset", str(header_seconds(decision.reset))))
        return finish(request, await handler(request))

    def metrics(self) -> dict[str, float]:
        return {
            "ratelimit_rejected_total": float(self.table.rejected_total),
            "ratelimit_keys": float(len(self.table)),
            "ratelimit_evicted_total": float(self.table.evicted_total),
        }
