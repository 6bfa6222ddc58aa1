"""The upstream response parser, fed byte by byte and in odd splits (no sockets needed)."""

from __future__ import annotations

import asyncio

import pytest
from hexagon_gateway.pool import EndpointPool
from hexagon_gateway.upstream import ResetError, UpstreamConnection


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def exchange(
    response: bytes, *, split: int, head_only: bool = False
) -> tuple[int, bytes, bool]:
    conn = UpstreamConnection(EndpointPool("127.0.0.1", 1))
    conn.connection_made(Transport())
    conn.send(b"GET / HTTP/1.1\r\n\r\n", head_only=head_only)
    for i in range(0, len(response), split):
        conn.data_received(response[i : i + split])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    head = await conn.read_head(deadline)
    body = head.body
    if body is None:
        parts = []
        while chunk := await conn.read(deadline):
            parts.append(chunk)
        body = b"".join(parts)
    return head.status, body, conn.reusable


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n"
)


@pytest.mark.parametrize("split", [1, 2, 3, 7, 1000], ids=lambda s: f"split-{s}")
@pytest.mark.parametrize(
    ("response", "status", "body", "reusable"),
    [
        pytest.param(CHUNKED, 200, b"hello world", True, id="chunked-with-trailer"),
        pytest.param(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc", 201, b"abc", True,
                     id="content-length"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                     200, b"ok", True, id="interim-100-skipped"),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True, id="no-content"),
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 200,
                     b"x", False, id="connection-close"),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, b"x", False,
                     id="http10-closes"),
    ],
)  # fmt: skip
async def test_parse(response: bytes, status: int, body: bytes, reusable: bool, split: int) -> None:
    assert await exchange(response, split=split) == (status, body, reusable)


async def test_head_response_keeps_length_without_body() -> None:
    conn = UpstreamConnection(EndpointPool("127.0.0.1", 1))
    conn.connection_made(Transport())
    conn.send(b"HEAD / HTTP/1.1\r\n\r\n", head_only=True)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    head = await conn.read_head(asyncio.get_running_loop().time() + 5)
    assert (head.length, head.body, conn.reusable) == (1234, b"", True)


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", id="bad-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk"
        ),
    ],
)
async def test_malformed_responses_fail_the_exchange(response: bytes) -> None:
    with pytest.raises(ResetError):
        await exchange(response, split=1000)


async def test_upstream_closing_mid_body_is_an_error() -> None:
    conn = UpstreamConnection(EndpointPool("127.0.0.1", 1))
    conn.connection_made(Transport())
    conn.send(b"GET / HTTP/1.1\r\n\r\n")
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    deadline = asyncio.get_running_loop().time() + 5
    await conn.read_head(deadline)
    assert await conn.read(deadline) == b"abc"
    conn.connection_lost(None)
    with pytest.raises(ResetError):
        await conn.read(deadline)
