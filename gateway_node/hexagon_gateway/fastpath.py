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
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hexagon_gateway.answer import HIGH_WATER, Answering
from hexagon_gateway.balancer import EndpointState
from hexagon_gateway.config import IDEMPOTENT_METHODS
from hexagon_gateway.express import Express
from hexagon_gateway.headers import request_head
from hexagon_gateway.routing import normalize_path
from hexagon_gateway.runtime import Gateway, RouteRuntime

log = logging.getLogger("hexagon_gateway.fastpath")
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _no_header(name: str) -> str | None:
    return None


TICK = 0.02

_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"})
_HANDOFF_HEADERS = (b"transfer-encoding", b"upgrade", b"expect")
_KEEPALIVE_SECONDS = 75.0


class FastFront:
    """Owns the fast connections of one data listener."""

    def __init__(
        self, gateway: Gateway, *, fallback: Callable[[], asyncio.Protocol], trusted: Any
    ) -> None:
        self.gateway = gateway
        self.fallback = fallback  # builds an aiohttp RequestHandler for a handed-over socket
        self.trusted = trusted  # callable returning the TrustedPeers of the live config
        self.conns: set[FastProtocol] = set()
        self.pending: set[Express] = set()  # callback-mode exchanges awaiting a response head
        self._ticker: asyncio.TimerHandle | None = None
        self.closing = False

    def __call__(self) -> FastProtocol:
        return FastProtocol(self)

    def watch(self, express: Express) -> None:
        """First-byte deadlines of callback-mode exchanges, checked every TICK seconds.

        A loop timer per request costs more than the rest of the exchange's bookkeeping; a
        shared ticker makes a timeout fire at most TICK late, which no first-byte timeout
        (milliseconds to seconds) notices.
        """
        self.pending.add(express)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(TICK, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for express in [e for e in self.pending if e.first_byte <= now]:
            express.on_timeout()
        self._ticker = loop.call_later(TICK, self._tick) if self.pending else None

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


class FastProtocol(Answering, asyncio.Protocol):
    def __init__(self, front: FastFront) -> None:
        self.front = front
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.busy = False
        self.lost = False
        self.hint: EndpointState | None = None
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
            if self._body_buffered > HIGH_WATER:
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
        if len(self._buf) > HIGH_WATER:  # pipelined requests pile up while we work
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
        if (
            head.count(b"\n") != head.count(b"\r\n")
            or head.count(b"\r") != head.count(b"\n")
            or b"\x00" in head
        ):
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
            if colon <= 0 or name.translate(None, _TCHAR):  # anything left is not a token char
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

            table = runtime.table
            match = table.match(method, npath, get_header if table.uses_headers else _no_header)
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
            self.hint = ep  # the coroutine path opens a connection to the same choice
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
        self.front.gateway.metrics.handoffs += 1
        self._resume_reading()
        data = bytes(self._buf) + pending
        self._buf.clear()
        handler = self.front.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if data:
            handler.data_received(data)

    # -- body reader for forward() --------------------------------------------------------
