"""The data port's fast front end: a lean HTTP/1.1 server protocol for plain proxied requests.

Why: with aiohttp's server on the hot path the gateway spent more time building request and
response objects than forwarding bytes, and stayed under 0.3x nginx. Most gateway traffic is
simple: an HTTP/1.1 request with a Content-Length body (or none), on a route without
middlewares. This protocol handles exactly that case and nothing else, with no per-request
objects beyond the parsed head, writing the upstream's response back as bytes.

Everything else is handed over, at a request boundary and before a byte is answered, to
aiohttp's server protocol on the same socket (`transport.set_protocol`): routes with a
middleware chain (their contract is `web.Request`), chunked request bodies, `Expect`,
`Upgrade`/WebSocket, HTTP/1.0, absolute-form targets, and any head this parser does not find
perfectly regular (bare CR/LF, whitespace before a colon, duplicate or non-numeric
Content-Length, missing Host). aiohttp's llhttp-based parser is then the one that refuses
malformed, oversized (431) or ambiguous (Content-Length with Transfer-Encoding, 400) requests,
so the fast path never forwards anything a strict parser would reject.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hexagon_gateway.config import IDEMPOTENT_METHODS
from hexagon_gateway.express import Express, Resume
from hexagon_gateway.forward import Failure, Success, forward
from hexagon_gateway.headers import request_head, response_lines
from hexagon_gateway.routing import normalize_path
from hexagon_gateway.runtime import Gateway, RouteRuntime
from hexagon_gateway.upstream import ResponseHead, UpstreamConnection, UpstreamError

log = logging.getLogger("hexagon_gateway.fastpath")

_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"})
_HANDOFF_HEADERS = (b"transfer-encoding", b"upgrade", b"expect")
_HIGH_WATER = 256 * 1024
_KEEPALIVE_SECONDS = 75.0
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


def _json_reply(status: int, body: bytes, *, close: bool) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        len(body),
    )
    return head + (b"Connection: close\r\n\r\n" if close else b"\r\n") + body


class FastFront:
    """Owns the fast connections of one data listener."""

    def __init__(
        self, gateway: Gateway, *, fallback: Callable[[], asyncio.Protocol], trusted: Any
    ) -> None:
        self.gateway = gateway
        self.fallback = fallback  # builds an aiohttp RequestHandler for a handed-over socket
        self.trusted = trusted  # callable returning the TrustedPeers of the live config
        self.conns: set[FastProtocol] = set()
        self.closing = False
        self.handoffs = 0

    def __call__(self) -> FastProtocol:
        return FastProtocol(self)

    def sweep(self, now: float) -> None:
        for conn in list(self.conns):
            if not conn.busy and now - conn.last_active > _KEEPALIVE_SECONDS:
                conn.close()

    async def shutdown(self, grace: float) -> None:
        """Close idle connections now, busy ones after their response, all at `grace`."""
        self.closing = True
        for conn in list(self.conns):
            if not conn.busy:
                conn.close()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not any(c.busy for c in self.conns):
                break
            await asyncio.sleep(0.05)  # polling: a handful of iterations during shutdown only
        for conn in list(self.conns):
            conn.close()


class FastProtocol(asyncio.Protocol):
    def __init__(self, front: FastFront) -> None:
        self.front = front
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.busy = False
        self.lost = False
        self.last_active = self.loop.time()
        self._buf = bytearray()
        self._body_left = 0
        self._body: deque[bytes] = deque()
        self._body_buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # -- transport callbacks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        self.front.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.front.conns.discard(self)
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        left = self._body_left
        if left:
            if len(data) > left:
                self._buf += data[left:]
                data = data[:left]
            self._body_left = left - len(data)
            self._body.append(data)
            self._body_buffered += len(data)
            if self._body_buffered > _HIGH_WATER:
                self._pause_reading()
            self._wake()
            return
        if not self.busy:
            if self._buf:
                self._buf += data
                self._next()
            else:
                self._next(data)  # the usual case: a whole head in one read, no copy
            return
        self._buf += data
        if len(self._buf) > _HIGH_WATER:  # pipelined requests pile up while we work
            self._pause_reading()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.lost:
            self._read_paused = False
            self.transport.resume_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    # -- request head ---------------------------------------------------------------------
    def _next(self, src: bytes | None = None) -> None:
        if src is None:
            src = bytes(self._buf)
            self._buf.clear()
        end = src.find(b"\r\n\r\n")
        if end < 0:
            self._buf += src
            if len(src) > 65536 or not src[:1].isalpha():
                self._handoff()
            return
        head = src[:end]
        if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\n"):
            self._handoff(src)
            return
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if (
            len(parts) != 3
            or parts[2] != b"HTTP/1.1"
            or parts[0] not in _METHODS
            or not parts[1].startswith(b"/")
        ):
            self._handoff(src)
            return
        headers: list[tuple[bytes, bytes]] = []
        hmap: dict[bytes, bytes] = {}
        for line in lines[1:]:
            colon = line.find(b":")
            name = line[:colon]
            if colon <= 0 or name != name.strip() or b" " in name or b"\t" in name:
                self._handoff(src)
                return
            lname = name.lower()
            value = line[colon + 1 :].strip(b" \t")
            if lname in hmap and lname in (b"content-length", b"host"):
                self._handoff(src)
                return
            headers.append((name, value))
            hmap.setdefault(lname, value)
        if b"host" not in hmap:
            self._handoff(src)
            return
        for name in _HANDOFF_HEADERS:
            if name in hmap:
                self._handoff(src)
                return
        length = 0
        cl = hmap.get(b"content-length")
        if cl is not None:
            if not cl.isdigit() or len(cl) > 15:
                self._handoff(src)
                return
            length = int(cl)
        runtime = self.front.gateway.runtime
        route: RouteRuntime | None = None
        target = parts[1].decode("latin-1")
        path, _, query = target.partition("?")
        method = parts[0].decode("ascii")
        npath = normalize_path(path)
        if runtime is not None and npath is not None:

            def get_header(name: str) -> str | None:
                value = hmap.get(name.encode("latin-1"))
                return None if value is None else value.decode("latin-1")

            match = runtime.table.match(method, npath, get_header)
            if match is not None:
                route = match.target
                if route.chain:  # middlewares speak web.Request: aiohttp takes this connection
                    self._handoff(src)
                    return
                if route.route.strip_prefix:
                    from hexagon_gateway.routing import strip_prefix

                    npath = strip_prefix(npath, match.prefix)
        rest = src[end + 4 :]
        self.busy = True
        keep_alive = b"close" not in hmap.get(b"connection", b"").lower()
        if length:
            take = min(length, len(rest))
            if take:
                self._body.append(rest[:take])
                self._body_buffered += take
                rest = rest[take:]
            self._body_left = length - take
        if rest:  # pipelined requests wait for this one to finish
            self._buf += rest
        if (
            route is not None
            and not length
            and self._express(method, npath, query, headers, route, keep_alive, end)
        ):
            return
        self.loop.create_task(
            self.serve(method, npath, query, headers, route, keep_alive, length, end)
        )

    def _express(
        self,
        method: str,
        path: str | None,
        query: str,
        headers: list[tuple[bytes, bytes]],
        route: RouteRuntime,
        keep_alive: bool,
        head_size: int,
    ) -> bool:
        """Start the exchange in callback mode when nothing about it is unusual."""
        gateway = self.front.gateway
        runtime = gateway.runtime
        if (
            runtime is None
            or path is None
            or method not in IDEMPOTENT_METHODS
            or gateway.faults.active
            or head_size > runtime.config.limits.max_header_bytes
        ):
            return False
        upstream = runtime.upstreams.get(route.route.upstream)
        if upstream is None or upstream.config.load_balancer != "leastRequest":
            return False  # round-robin state must advance once per request: coroutine path
        ep = upstream.pool.pick()
        if ep is None:
            return False
        conn = gateway.endpoint_pool(ep.endpoint.host, ep.endpoint.port).take_idle()
        if conn is None:
            return False
        head = request_head(
            method=method,
            target=f"{path}?{query}" if query else path,
            raw_headers=headers,
            peer=self.peer,
            trusted=self.peer in self.front.trusted(),
            scheme="http",
            chunked=False,
        )
        upstream.pool.start(ep)
        gateway.metrics.in_flight += 1
        Express(
            self,
            conn,
            ep,
            upstream=upstream,
            route=route,
            method=method,
            keep_alive=keep_alive,
            request=(path, query, headers, head_size),
        )
        conn.send(head, head_only=method == "HEAD")
        return True

    def _handoff(self, pending: bytes = b"") -> None:
        transport = self.transport
        if transport is None or self.lost:
            return
        self.front.conns.discard(self)
        self.front.handoffs += 1
        self._resume_reading()
        data = bytes(self._buf) + pending
        self._buf.clear()
        handler = self.front.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if data:
            handler.data_received(data)

    # -- body reader for forward() --------------------------------------------------------
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
        if self._body_buffered < _HIGH_WATER // 4:
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
