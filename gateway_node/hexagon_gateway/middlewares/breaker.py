"""Circuit breaker around the upstream call (aiohttp adapter over ``breaker_core``).

A request is a sample: its latency is measured around the inner handler, and it counts as an
error when the handler answers 5xx or raises anything but a 4xx ``HTTPException``. A request
cancelled by its client gives no verdict. Rejections answer 503 JSON with
``x-hexagon-breaker: open`` so clients and tests can tell breaker refusals from upstream 503s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ._http import json_error, response_hooks
from .breaker_core import Breaker, Clock, Rejection, Settings
from .ratelimit_core import header_seconds
from .schemas import OptionError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CircuitBreaker:
    kind = "circuitBreaker"

    def __init__(
        self,
        *,
        max_concurrent: int,
        p99_ms: float,
        window_seconds: float = 10.0,
        min_requests: int = 20,
        open_seconds: float = 5.0,
        max_open_seconds: float | None = None,
        half_open_requests: int = 5,
        error_percent: float | None = None,
        route_name: str = "",
        clock: Clock = time.monotonic,
    ) -> None:
        cap = max_open_seconds if max_open_seconds is not None else max(60.0, open_seconds)
        if cap < open_seconds:
            raise OptionError("maxOpenSeconds", cap, f"a number >= openSeconds ({open_seconds})")
        self.core = Breaker(
            Settings(
                max_concurrent=max_concurrent,
                p99_ms=float(p99_ms),
                window_seconds=float(window_seconds),
                min_requests=min_requests,
                open_seconds=float(open_seconds),
                max_open_seconds=float(cap),
                half_open_requests=half_open_requests,
                error_percent=error_percent,
            ),
            clock=clock,
        )
        self._clock = clock
        self._route = route_name

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ticket = self.core.try_acquire()
        if isinstance(ticket, Rejection):
            return self._reject(ticket)
        ok: bool | None = None
        first_byte: list[float] = []
        clock = self._clock
        response_hooks(request).callbacks.append(lambda: first_byte.append(clock()))
        try:
            response = await handler(request)
            ok = response.status < 500
            return response
        except web.HTTPException as exc:
            ok = exc.status < 500
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            ok = False
            raise
        finally:
            self.core.release(ticket, ok=ok, first_byte=first_byte[0] if first_byte else None)

    def _reject(self, rejection: Rejection) -> web.Response:
        headers = {"x-hexagon-breaker": "open"}
        if rejection.retry_after > 0:
            headers["Retry-After"] = str(max(1, header_seconds(rejection.retry_after)))
        return json_error(
            503,
            {"error": "circuit_open", "reason": rejection.reason, "route": self._route},
            headers=headers,
        )

    def metrics(self) -> dict[str, float]:
        return {
            "breaker_state": float(self.core.state),
            "breaker_inflight": float(self.core.inflight),
            "breaker_trips_total": float(self.core.trips_total),
            "breaker_rejected_total": float(self.core.rejected_total),
        }
