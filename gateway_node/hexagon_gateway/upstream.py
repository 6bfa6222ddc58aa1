"""A lean HTTP/1.1 upstream client on asyncio Protocols, with a keep-alive pool per endpoint.

Why not aiohttp's ClientSession: on the proxy's hot path it costs more than the whole server
side (URL objects, tracing hooks, cookie jars, a task per timeout). A proxy needs much less: write
a pre-serialized request head, parse a status line and headers, then hand body bytes through
with flow control. Timeouts are loop timers on the waiting future, so no task is created per
request, and a small response whose body arrived with its head is returned as one bytes object.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexagon_gateway.pool import EndpointPool

MAX_HEAD_BYTES = 64 * 1024
HIGH_WATER = 256 * 1024  # pause reading the upstream socket above this much unconsumed body
LOW_WATER = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})

_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE, _IDLE, _TRAILERS = range(7)


class UpstreamError(Exception):
    """Base of failures talking to an endpoint; `kind` feeds retries and outlier detection."""

    kind = "reset"


class ConnectFailure(UpstreamError):
    kind = "connect-failure"


class ConnectTimeout(UpstreamError):
    kind = "connect-timeout"


class FirstByteTimeout(UpstreamError):
    kind = "first-byte-timeout"


class BodyTimeout(UpstreamError):
    kind = "total-timeout"


class ResetError(UpstreamError):
    kind = "reset"


class ResponseHead:
    __slots__ = ("body", "keep_alive", "length", "named", "raw", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        raw: list[tuple[bytes, bytes]],
        length: int | None,
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.raw = raw  # (lower-case name, whole header line), as received
        self.length = length  # None: chunked or until close
        self.keep_alive = keep_alive
        self.body: bytes | None = None  # the whole body, when it came with the head
        self.named: set[bytes] | None = None  # tokens of the Connection header

    @property
    def headers(self) -> list[tuple[str, str]]:
        out = []
        for _, line in self.raw:
            name, _, value = line.decode("latin-1").partition(":")
            out.append((name.strip(), value.strip()))
        return out


def _timeout(fut: asyncio.Future[None], exc_type: type[UpstreamError]) -> None:
    if not fut.done():
        fut.set_exception(exc_type())


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; exactly one exchange at a time."""

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._loop = pool.loop
        self._state = _IDLE
        self._buf = bytearray()
        self._head_only = False
        self._head: ResponseHead | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._remaining = 0
        self._paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        # Callback mode (fastpath.Express): called on every event instead of waking a future.
        self.listener: Callable[[], None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
        elif self._state not in (_IDLE, _DONE):
            self._error = ResetError(str(exc) if exc else "upstream closed the connection")
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ResetError("upstream closed while writing"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _HEAD:
            if self._buf:
                self._buf += data
                data = bytes(self._buf)
                self._buf.clear()
            self._parse_head(data)
        elif state == _LENGTH:
            self._feed_length(data)
        elif state in (_CHUNKED, _TRAILERS):
            self._buf += data
            self._parse_chunks()
        elif state == _UNTIL_CLOSE:
            self._push(data)
        else:  # bytes nobody asked for: the connection cannot be trusted any more
            self.close()

    # -- parsing ----------------------------------------------------------------------
    def _parse_head(self, src: bytes) -> None:
        # Parsed straight from the received bytes: a whole response usually arrives at once.
        end = src.find(b"\r\n\r\n")
        if end < 0:
            if len(src) > MAX_HEAD_BYTES:
                self._fail(ResetError("upstream response head too large"))
            else:
                self._buf += src
            return
        lines = src[:end].split(b"\r\n")
        rest = src[end + 4 :]
        parts = lines[0].split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self._fail(ResetError(f"bad upstream status line {lines[0][:80]!r}"))
            return
        if 100 <= status < 200 and status != 101:  # interim response: wait for the real one
            if rest:
                self._parse_head(rest)
            return
        keep_alive = parts[0] == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        raw: list[tuple[bytes, bytes]] = []
        named: set[bytes] | None = None
        for line in lines[1:]:
            colon = line.find(b":")
            if colon <= 0:
                continue
            lname = line[:colon].lower()
            raw.append((lname, line))
            if lname in _FRAMING:
                value = line[colon + 1 :].strip().lower()
                if lname == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        self._fail(ResetError("bad upstream content-length"))
                        return
                elif lname == b"transfer-encoding":
                    chunked = value.endswith(b"chunked")
                else:  # connection
                    tokens = {t.strip() for t in value.split(b",")}
                    if b"close" in tokens:
                        keep_alive = False
                    elif b"keep-alive" in tokens:
                        keep_alive = True
                    named = (named or set()) | tokens
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        head = ResponseHead(status, reason, raw, None, keep_alive)
        head.named = named
        self._head = head
        if self._head_only or status in NO_BODY_STATUSES or status == 101:
            head.length = length if self._head_only else 0
            head.body = b""
            self._state = _DONE
        elif chunked:
            self._state = _CHUNKED
            self._buf += rest
            self._parse_chunks()
        elif length is not None:
            head.length = length
            if len(rest) >= length:
                head.body = rest[:length] if len(rest) > length else rest
                self._state = _DONE
            else:
                self._state = _LENGTH
                self._remaining = length
                if rest:
                    self._feed_length(rest)
        else:
            head.keep_alive = False
            self._state = _UNTIL_CLOSE
            if rest:
                self._push(rest)
        self._wake()

    def _feed_length(self, data: bytes) -> None:
        if len(data) >= self._remaining:
            data = data[: self._remaining]
            self._remaining = 0
            self._state = _DONE
        else:
            self._remaining -= len(data)
        self._push(data)

    def _parse_chunks(self) -> None:
        buf = self._buf
        while True:
            if self._remaining > 0:  # inside chunk data (+2 for its CRLF)
                take = min(len(buf), self._remaining)
                if take == 0:
                    return
                data_len = max(0, min(take, self._remaining - 2))
                if data_len:
                    self._push(bytes(buf[:data_len]))
                del buf[:take]
                self._remaining -= take
                continue
            nl = buf.find(b"\r\n")
            if nl < 0:
                if len(buf) > 4096:
                    self._fail(ResetError("bad chunk size line"))
                return
            line = bytes(buf[:nl]).split(b";", 1)[0].strip()
            del buf[: nl + 2]
            if self._state == _TRAILERS:  # reading trailers until an empty line
                if not line:
                    self._state = _DONE
                    self._wake()
                    return
                continue
            try:
                size = int(line, 16)
            except ValueError:
                self._fail(ResetError("bad chunk size"))
                return
            if size == 0:
                self._state = _TRAILERS
                continue
            self._remaining = size + 2

    def _push(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
        self._wake()

    def _wake(self) -> None:
        if self.listener is not None:
            self.listener()
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: UpstreamError) -> None:
        self._error = exc
        self._wake()
        self.close()

    # -- the exchange API used by the proxy -------------------------------------------
    def send(self, data: bytes, *, head_only: bool = False) -> None:
        """Start an exchange by writing the request head (and maybe a small body)."""
        self._state = _HEAD
        self._head_only = head_only
        self._head = None
        self._error = None
        self._chunks.clear()
        self._buffered = 0
        self._remaining = 0
        assert self.transport is not None
        self.transport.write(data)

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise ResetError("upstream closed while sending the body")
        self.transport.write(data)
        if self._write_paused:
            self._drain = self._loop.create_future()
            await self._drain

    async def _wait(self, deadline: float, exc_type: type[UpstreamError]) -> None:
        fut = self._loop.create_future()
        self._waiter = fut
        timer = self._loop.call_at(deadline, _timeout, fut, exc_type)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None

    async def read_head(self, deadline: float) -> ResponseHead:
        while self._head is None:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise ResetError("upstream closed before answering")
            await self._wait(deadline, FirstByteTimeout)
        return self._head

    async def read(self, deadline: float) -> bytes:
        """Next body chunk; b"" once the body is complete."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._state == _DONE:
                return b""
            await self._wait(deadline, BodyTimeout)
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def head(self) -> ResponseHead | None:
        return self._head

    @property
    def error(self) -> UpstreamError | None:
        return self._error

    @property
    def reusable(self) -> bool:
        head = self._head
        return (
            not self.closed
            and self._state == _DONE
            and self._error is None
            and head is not None
            and head.keep_alive
            and head.status != 101
        )

    def finish(self) -> None:
        """End of an exchange: back to the pool if it can carry another one."""
        if self.reusable:
            self._state = _IDLE
            self.reused = True
            self.pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.pool.forget(self)

    def detach(self) -> asyncio.Transport:
        """Hand the raw transport over (WebSocket tunnels); the pool forgets it."""
        self.pool.forget(self)
        assert self.transport is not None
        return self.transport

    def take_buffered(self) -> bytes:
        data = bytes(self._buf) + b"".join(self._chunks)
        self._buf.clear()
        self._chunks.clear()
        return data
