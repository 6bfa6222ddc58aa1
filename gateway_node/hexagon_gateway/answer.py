"""Answering one request on a fast-path connection: errors, forwarding, response relay.

Split from fastpath.py, which owns the connection (parsing, hand-over, flow control): this
mixin turns a parsed request into bytes on the socket. `start_response` and `stream_body` are
shared with callback mode (express.py), so a response is framed the same way on every path:
hop-by-hop headers dropped, Content-Length kept or chunked framing applied, HEAD/204/304 bodiless.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from hexagon_gateway.balancer import EndpointState
from hexagon_gateway.express import Resume
from hexagon_gateway.forward import Failure, Success, forward
from hexagon_gateway.headers import request_head, response_lines
from hexagon_gateway.runtime import RouteRuntime
from hexagon_gateway.upstream import ResponseHead, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from hexagon_gateway.fastpath import FastFront

log = logging.getLogger("hexagon_gateway.fastpath")
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
HIGH_WATER = 256 * 1024  # unconsumed request body above which the client socket is paused


def _json_reply(status: int, body: bytes, *, close: bool) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        len(body),
    )
    return head + (b"Connection: close\r\n\r\n" if close else b"\r\n") + body


class Answering:
    """Mixin of FastProtocol; the attributes below are FastProtocol's."""

    front: FastFront
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    peer: str
    busy: bool
    lost: bool
    last_active: float
    _buf: bytearray
    _body_left: int
    _body: deque[bytes]
    _body_buffered: int
    _waiter: asyncio.Future[None] | None
    _write_paused: bool
    _drain: asyncio.Future[None] | None
    hint: EndpointState | None

    def _next(self, src: bytes | None = None) -> None:
        raise NotImplementedError

    def _resume_reading(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def _read_body(self) -> bytes:
        while not self._body:
            if self._body_left == 0:
                return b""
            if self.lost:
                raise ConnectionError("client went away while sending the body")
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._body.popleft()
        self._body_buffered -= len(data)
        if self._body_buffered < HIGH_WATER // 4:
            self._resume_reading()
        return data

    def _send(self, data: bytes) -> None:
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            raise ConnectionError("client went away")
        transport.write(data)

    async def _write(self, data: bytes) -> None:
        self._send(data)
        if self._write_paused:
            self._drain = self.loop.create_future()
            await self._drain

    # -- one request ----------------------------------------------------------------------
    async def serve(
        self,
        method: str,
        path: str | None,
        query: str,
        headers: list[tuple[bytes, bytes]],
        route: RouteRuntime | None,
        keep_alive: bool,
        length: int,
        head_size: int,
        resume: Resume | None = None,
    ) -> None:
        gateway = self.front.gateway
        metrics = gateway.metrics
        if resume is None:
            metrics.in_flight += 1
            start = time.perf_counter()
        else:  # continuing what callback mode started (and counted)
            start = resume.start
        code, upstream_name = 500, ""
        try:
            code, upstream_name, keep_alive = await self._answer(
                method, path, query, headers, route, keep_alive, length, head_size, resume
            )
        except ConnectionError:
            code, keep_alive = 499, False  # the client went away (nginx's convention)
        except UpstreamError:
            code, keep_alive = 502, False
        except Exception:
            log.exception("unhandled error in the fast path")
            keep_alive = False
        finally:
            metrics.in_flight -= 1
            metrics.observe(
                route=route.route.name if route is not None else "",
                upstream=upstream_name,
                code=code,
                seconds=time.perf_counter() - start,
            )
            self.finish(keep_alive)

    def send_failure(self, failure: Failure, *, keep_alive: bool) -> bool:
        """Answer with a JSON error; returns whether the connection stays open."""
        close = not keep_alive or bool(self._body_left)
        self._send(_json_reply(failure.status, failure.body(), close=close))
        return not close

    def finish(self, keep_alive: bool) -> None:
        self.busy = False
        self.last_active = self.loop.time()
        self._body.clear()
        self._body_buffered = 0
        if self._body_left or not keep_alive or self.front.closing:
            self._body_left = 0
            self.close()
            return
        self._resume_reading()
        if self._buf and not self.lost:
            self._next()

    async def _answer(
        self,
        method: str,
        path: str | None,
        query: str,
        headers: list[tuple[bytes, bytes]],
        route: RouteRuntime | None,
        keep_alive: bool,
        length: int,
        head_size: int,
        resume: Resume | None,
    ) -> tuple[int, str, bool]:
        gateway = self.front.gateway
        runtime = gateway.runtime
        hint, self.hint = self.hint, None

        def fail(status: int, code: str, message: str) -> tuple[int, str, bool]:
            return failure(Failure(status, code, message))

        def failure(f: Failure) -> tuple[int, str, bool]:
            return f.status, "", self.send_failure(f, keep_alive=keep_alive)

        if runtime is None:
            return fail(503, "no_config", "the gateway has no valid config yet")
        faults = gateway.faults
        if faults.active:
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000.0)
            if faults.should_fail():
                return fail(faults.error_code, "injected_fault", "fault injection")
        if head_size > runtime.config.limits.max_header_bytes:
            keep_alive = False
            return fail(431, "request_header_fields_too_large", "headers too large")
        if path is None:
            return fail(400, "bad_path", "the request path is not a valid origin-form path")
        if route is None:
            return fail(404, "no_route", f"no route matches {method} {path}")
        if length > route.max_body:
            keep_alive = False
            return fail(413, "body_too_large", f"body exceeds {route.max_body} bytes")
        upstream = runtime.upstreams.get(route.route.upstream)
        if upstream is None:
            return fail(502, "unknown_upstream", "upstream is not configured")
        head = request_head(
            method=method,
            target=f"{path}?{query}" if query else path,
            raw_headers=headers,
            peer=self.peer,
            trusted=self.peer in self.front.trusted(),
            scheme="http",
            chunked=False,
        )
        result = await forward(
            gateway,
            upstream,
            route,
            method=method,
            head=head,
            body=self._read_body if length else None,
            chunked=False,
            deadline=None if resume is None else resume.deadline,
            prior=None if resume is None else resume.prior,
            first=hint,
        )
        name = upstream.config.name
        if isinstance(result, Failure):
            status, _, keep = failure(result)
            return status, name, keep
        try:
            return await self._relay(result, method, keep_alive), name, keep_alive
        finally:
            result.done()

    def start_response(
        self, conn: UpstreamConnection, rhead: ResponseHead, method: str, keep_alive: bool
    ) -> tuple[int, bool]:
        """Write the response head (and the body when it is already complete).

        Returns (status, complete); not complete means the body must be streamed after it.
        """
        status = rhead.status
        out = [b"HTTP/1.1 %d %s\r\n" % (status, rhead.reason.encode("latin-1"))]
        for line in response_lines(rhead.raw, rhead.named):
            out.append(line)
            out.append(b"\r\n")
        if not keep_alive:
            out.append(b"Connection: close\r\n")
        body = rhead.body
        if method == "HEAD" or status in (204, 304) or status < 200:
            if method == "HEAD" and rhead.length is not None:
                out.append(b"Content-Length: %d\r\n" % rhead.length)
            out.append(b"\r\n")
            conn.finish()
            self._send(b"".join(out))
            return status, True
        if body is not None:
            out.append(b"Content-Length: %d\r\n\r\n" % len(body))
            out.append(body)
            conn.finish()
            self._send(b"".join(out))
            return status, True
        if rhead.length is None:
            out.append(b"Transfer-Encoding: chunked\r\n\r\n")
        else:
            out.append(b"Content-Length: %d\r\n\r\n" % rhead.length)
        self._send(b"".join(out))
        return status, False

    async def stream_body(
        self, conn: UpstreamConnection, rhead: ResponseHead, deadline: float
    ) -> None:
        chunked = rhead.length is None
        try:
            if self._write_paused:
                await self._write(b"")
            while True:
                data = await conn.read(deadline)
                if not data:
                    break
                await self._write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
            if chunked:
                await self._write(b"0\r\n\r\n")
        except (UpstreamError, ConnectionError):
            conn.close()
            self.close()  # headers are out: cutting the connection is the only honest signal
            raise
        conn.finish()

    async def _relay(self, result: Success, method: str, keep_alive: bool) -> int:
        status, complete = self.start_response(result.conn, result.head, method, keep_alive)
        if not complete:
            await self.stream_body(result.conn, result.head, result.deadline)
        return status
