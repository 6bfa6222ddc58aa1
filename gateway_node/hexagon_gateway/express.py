"""Callback mode for the commonest exchange: idempotent, no body, an idle pooled connection.

Why: on the coroutine path every request costs a task, five coroutine frames and a future,
which at tens of thousands of requests per second is a large share of the CPU. Here the request
head is written synchronously while the client's bytes are being parsed, and the upstream
protocol calls `on_event` when the response head arrives; a complete small response is written
back from inside that callback. No task, no future.

Anything unusual leaves callback mode without losing semantics: a streamed response body
continues in a task; an error or a retryable 5xx hands over to `forward()` with this attempt
recorded (`Prior`: the endpoint to avoid and the failure to answer if no retry is possible), so
retries, budgets and outlier accounting are exactly those of the coroutine path. A keep-alive
connection found closed by the upstream is resent on a fresh one, as the coroutine path does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hexagon_gateway import balancer
from hexagon_gateway.forward import (
    Failure,
    Prior,
    failure_for,
    outcome_of,
    retryable_error,
    retryable_status,
)
from hexagon_gateway.runtime import RouteRuntime, UpstreamRuntime
from hexagon_gateway.upstream import FirstByteTimeout, ResetError, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from hexagon_gateway.fastpath import FastProtocol


class Resume:
    """What the coroutine path needs to continue an exchange callback mode started."""

    __slots__ = ("deadline", "prior", "start")

    def __init__(self, start: float, deadline: float, prior: Prior | None) -> None:
        self.start = start
        self.deadline = deadline
        self.prior = prior


class Express:
    __slots__ = (
        "conn",
        "deadline",
        "ep",
        "first_byte",
        "keep_alive",
        "method",
        "proto",
        "request",
        "route",
        "start",
        "upstream",
    )

    def __init__(
        self,
        proto: FastProtocol,
        conn: UpstreamConnection,
        ep: balancer.EndpointState,
        *,
        upstream: UpstreamRuntime,
        route: RouteRuntime,
        method: str,
        keep_alive: bool,
        request: tuple[str, str, list[tuple[bytes, bytes]], int],  # path, query, headers, size
    ) -> None:
        self.proto = proto
        self.conn = conn
        self.ep = ep
        self.upstream = upstream
        self.route = route
        self.method = method
        self.keep_alive = keep_alive
        self.request = request
        self.start = time.perf_counter()
        loop = proto.loop
        now = loop.time()
        timeouts = route.timeouts
        self.deadline = now + timeouts.total_ms / 1000.0
        first_byte = min(self.deadline, now + timeouts.first_byte_ms / 1000.0)
        self.first_byte = first_byte
        proto.front.watch(self)  # one shared ticker, not a loop timer per request
        conn.listener = self.on_event

    def on_event(self) -> None:
        conn = self.conn
        head = conn.head
        if head is None:
            if conn.error is None and not conn.closed:
                return  # still waiting for the head
            self._failed(conn.error or ResetError("upstream closed before answering"))
            return
        conn.listener = None
        self.proto.front.pending.discard(self)
        status = head.status
        pool = self.upstream.pool
        retries = self.upstream.config.retries
        if (
            status >= 500
            and retries.attempts
            and retryable_status(status, retries.retry_on)
            and pool.retry_allowed()
        ):
            pool.finish(self.ep, balancer.ERROR_5XX)
            if head.body is not None:
                conn.finish()
            else:
                conn.close()
            failure = Failure(status, "upstream_error", f"upstream answered {status}")
            self._resume(Prior({self.ep.index}, failure))
            return
        outcome = balancer.ERROR_5XX if status >= 500 else balancer.SUCCESS
        proto = self.proto
        try:
            code, complete = proto.start_response(conn, head, self.method, self.keep_alive)
        except ConnectionError:
            conn.close()
            pool.finish(self.ep, outcome)
            self._done(499, keep_alive=False)
            return
        if complete:
            pool.finish(self.ep, outcome)
            self._done(code, keep_alive=self.keep_alive)
        else:
            proto.loop.create_task(self._stream(code, outcome))

    async def _stream(self, code: int, outcome: str) -> None:
        keep_alive = self.keep_alive
        try:
            await self.proto.stream_body(self.conn, self.conn.head, self.deadline)  # type: ignore[arg-type]
        except (UpstreamError, ConnectionError):
            keep_alive = False
        finally:
            self.upstream.pool.finish(self.ep, outcome)
            self._done(code, keep_alive=keep_alive)

    def on_timeout(self) -> None:
        self._failed(FirstByteTimeout())

    def _failed(self, error: UpstreamError) -> None:
        conn = self.conn
        conn.listener = None
        self.proto.front.pending.discard(self)
        conn.close()
        pool = self.upstream.pool
        if isinstance(error, ResetError) and conn.reused:
            # The upstream closed this idle keep-alive connection: not the endpoint's fault.
            pool.finish(self.ep, balancer.LOCAL_ERROR)
            self._resume(None)
            return
        pool.finish(self.ep, outcome_of(error))
        self.proto.front.gateway.metrics.count_upstream_error(self.upstream.config.name, error.kind)
        failure = failure_for(error, self.ep.endpoint.address)
        retries = self.upstream.config.retries
        if retries.attempts and retryable_error(error, retries.retry_on):
            self._resume(Prior({self.ep.index}, failure))
            return
        try:
            self.proto.send_failure(failure, keep_alive=self.keep_alive)
        except ConnectionError:
            self._done(499, keep_alive=False)
            return
        self._done(failure.status, keep_alive=self.keep_alive)

    def _resume(self, prior: Prior | None) -> None:
        path, query, headers, size = self.request
        resume = Resume(self.start, self.deadline, prior)
        self.proto.loop.create_task(
            self.proto.serve(
                self.method, path, query, headers, self.route, self.keep_alive, 0, size, resume
            )
        )

    def _done(self, code: int, *, keep_alive: bool) -> None:
        metrics = self.proto.front.gateway.metrics
        metrics.in_flight -= 1
        metrics.observe(
            route=self.route.route.name,
            upstream=self.upstream.config.name,
            code=code,
            seconds=time.perf_counter() - self.start,
        )
        self.proto.finish(keep_alive)
