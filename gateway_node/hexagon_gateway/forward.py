"""Upstream exchange with endpoint choice, retries and outlier accounting (front-end neutral).

Both data-port front ends (the fast protocol and the aiohttp fallback) call `forward`: it picks
an endpoint, writes the request head (and streams the body, with the size limit enforced on the
bytes actually read), waits for the response head within the first-byte timeout, and retries
requests without a body on a *different* endpoint when the method is idempotent, the failure is
listed in `retryOn`, and the retry budget allows. The caller streams the response body and then
calls `Success.done()`, which is when the endpoint stops counting as busy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hexagon_gateway import balancer
from hexagon_gateway.config import IDEMPOTENT_METHODS
from hexagon_gateway.runtime import Gateway, RouteRuntime, UpstreamRuntime
from hexagon_gateway.upstream import (
    BodyTimeout,
    ConnectFailure,
    ConnectTimeout,
    FirstByteTimeout,
    ResetError,
    ResponseHead,
    UpstreamConnection,
    UpstreamError,
)

BodyReader = Callable[[], Awaitable[bytes]]  # next chunk of the client's body, b"" at the end


class BodyTooLarge(Exception):
    pass


@dataclass(slots=True)
class Failure:
    status: int
    code: str
    message: str
    extra: dict[str, Any] | None = None

    def body(self) -> bytes:
        return json.dumps(
            {"error": self.code, "message": self.message, **(self.extra or {})}
        ).encode()


@dataclass(slots=True)
class Success:
    conn: UpstreamConnection
    head: ResponseHead
    pool: balancer.Pool
    endpoint: balancer.EndpointState
    outcome: str
    retry: bool
    deadline: float

    def done(self) -> None:
        self.pool.finish(self.endpoint, self.outcome, retry=self.retry)


_ERRORS: dict[type[UpstreamError], tuple[int, str]] = {
    ConnectFailure: (502, "upstream_connect_failure"),
    ConnectTimeout: (504, "upstream_connect_timeout"),
    FirstByteTimeout: (504, "upstream_timeout"),
    BodyTimeout: (504, "upstream_timeout"),
    ResetError: (502, "upstream_reset"),
}


def _outcome(error: UpstreamError) -> str:
    if isinstance(error, ConnectFailure | ConnectTimeout):
        return balancer.CONNECT_FAILURE
    return balancer.ERROR_5XX


def _retryable_error(error: UpstreamError, retry_on: frozenset[str]) -> bool:
    if isinstance(error, ConnectFailure | ConnectTimeout):
        return bool(retry_on & {"connect-failure", "gateway-error", "5xx"})
    if isinstance(error, ResetError):
        return bool(retry_on & {"reset", "gateway-error", "5xx"})
    return bool(retry_on & {"gateway-error", "5xx"})  # timeouts


def _retryable_status(status: int, retry_on: frozenset[str]) -> bool:
    if status >= 500 and "5xx" in retry_on:
        return True
    return status in (502, 503, 504) and "gateway-error" in retry_on


async def forward(
    gateway: Gateway,
    upstream: UpstreamRuntime,
    route: RouteRuntime,
    *,
    method: str,
    head: bytes,
    body: BodyReader | None,
    chunked: bool,
    deadline: float | None = None,
    prior: Prior | None = None,
    first: balancer.EndpointState | None = None,
) -> Success | Failure:
    """`prior`: a first attempt already made elsewhere (the fast path's callback mode)."""
    loop = asyncio.get_running_loop()
    if deadline is None:
        deadline = loop.time() + route.timeouts.total_ms / 1000.0
    pool = upstream.pool
    retries = upstream.config.retries
    can_retry = body is None and method in IDEMPOTENT_METHODS
    attempts = 1 + (retries.attempts if can_retry else 0)
    tried: set[int] = set() if prior is None else set(prior.exclude)
    last: Failure | None = None if prior is None else prior.failure
    metrics = gateway.metrics
    name = upstream.config.name
    for attempt in range(0 if prior is None else 1, attempts):
        is_retry = attempt > 0
        if is_retry:
            if not pool.retry_allowed() or loop.time() >= deadline:
                break
            metrics.count_retry(name)
        ep: balancer.EndpointState | None
        if attempt == 0 and first is not None and _belongs(first, pool):
            ep = first  # already chosen by the fast path: choosing twice would skew rotation
        else:
            ep = pool.pick(tried)
        if ep is None:
            if last is not None:
                break
            return Failure(503, "no_healthy_upstream", "no endpoint can take the request")
        tried.add(ep.index)
        pool.start(ep, retry=is_retry)
        try:
            conn, rhead = await _exchange(
                gateway, ep, route, method=method, head=head, body=body, chunked=chunked,
                deadline=deadline,
            )  # fmt: skip
        except BodyTooLarge:
            pool.finish(ep, balancer.LOCAL_ERROR, retry=is_retry)
            return Failure(413, "body_too_large", f"body exceeds {route.max_body} bytes")
        except UpstreamError as error:
            pool.finish(ep, _outcome(error), retry=is_retry)
            metrics.count_upstream_error(name, error.kind)
            status, code = _ERRORS.get(type(error), (502, "upstream_error"))
            extra = {"endpoint": ep.endpoint.address}
            last = Failure(status, code, str(error) or code, extra)
            if attempt + 1 < attempts and _retryable_error(error, retries.retry_on):
                continue
            return last
        except BaseException:
            pool.finish(ep, balancer.LOCAL_ERROR, retry=is_retry)
            raise
        status = rhead.status
        outcome = balancer.ERROR_5XX if status >= 500 else balancer.SUCCESS
        if status >= 500 and attempt + 1 < attempts and _retryable_status(status, retries.retry_on):
            pool.finish(ep, outcome, retry=is_retry)
            last = Failure(status, "upstream_error", f"upstream answered {status}")
            if rhead.body is not None:
                conn.finish()
            else:
                conn.close()
            continue
        return Success(conn, rhead, pool, ep, outcome, is_retry, deadline)
    assert last is not None
    return last


def _belongs(ep: balancer.EndpointState, pool: balancer.Pool) -> bool:
    return ep.index < len(pool.endpoints) and pool.endpoints[ep.index] is ep


@dataclass(slots=True)
class Prior:
    exclude: set[int]
    failure: Failure


def failure_for(error: UpstreamError, endpoint: str) -> Failure:
    status, code = _ERRORS.get(type(error), (502, "upstream_error"))
    return Failure(status, code, str(error) or code, {"endpoint": endpoint})


def outcome_of(error: UpstreamError) -> str:
    return _outcome(error)


def retryable_error(error: UpstreamError, retry_on: frozenset[str]) -> bool:
    return _retryable_error(error, retry_on)


def retryable_status(status: int, retry_on: frozenset[str]) -> bool:
    return _retryable_status(status, retry_on)


async def _exchange(
    gateway: Gateway,
    ep: balancer.EndpointState,
    route: RouteRuntime,
    *,
    method: str,
    head: bytes,
    body: BodyReader | None,
    chunked: bool,
    deadline: float,
) -> tuple[UpstreamConnection, ResponseHead]:
    loop = asyncio.get_running_loop()
    timeouts = route.timeouts
    pool = gateway.endpoint_pool(ep.endpoint.host, ep.endpoint.port)
    head_only = method == "HEAD"
    for fresh in (False, True):
        connect_deadline = min(deadline, loop.time() + timeouts.connect_ms / 1000.0)
        conn = await (pool.open(connect_deadline) if fresh else pool.acquire(connect_deadline))
        try:
            conn.send(head, head_only=head_only)
            if body is not None:
                await _send_body(conn, body, route.max_body, deadline, chunked=chunked)
            first_byte = min(deadline, loop.time() + timeouts.first_byte_ms / 1000.0)
            return conn, await conn.read_head(first_byte)
        except ResetError:
            conn.close()
            # A keep-alive connection the upstream closed while idle: resend once on a new
            # one. Safe because no byte of a request body can have been consumed.
            if fresh or not conn.reused or body is not None:
                raise
        except BaseException:
            conn.close()
            raise
    raise AssertionError("unreachable")


async def _send_body(
    conn: UpstreamConnection, body: BodyReader, limit: int, deadline: float, *, chunked: bool
) -> None:
    sent = 0
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                data = await body()
                if not data:
                    break
                sent += len(data)
                if sent > limit:
                    raise BodyTooLarge()
                if chunked:
                    await conn.write(b"%x\r\n%b\r\n" % (len(data), data))
                else:
                    await conn.write(data)
            if chunked:
                await conn.write(b"0\r\n\r\n")
    except TimeoutError:
        raise BodyTimeout("timed out sending the request body") from None
