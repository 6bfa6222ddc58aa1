"""Keep-alive connections to one endpoint, shared across config generations.

A pool per host:port (not per upstream) so that two upstreams naming the same endpoint, or a
config reload that keeps it, reuse the same warm connections. Idle connections closed by the
upstream remove themselves (connection_lost), so `take_idle` never hands out a dead one it knows.
"""

from __future__ import annotations

import asyncio

from hexagon_gateway.upstream import ConnectFailure, ConnectTimeout, UpstreamConnection


class EndpointPool:
    """Idle keep-alive connections to one host:port (shared across config generations)."""

    def __init__(self, host: str, port: int, *, max_idle: int = 256) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.loop = asyncio.get_running_loop()
        self._idle: list[UpstreamConnection] = []
        self.opened = 0

    def take_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def acquire(self, deadline: float) -> UpstreamConnection:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return await self.open(deadline)

    async def open(self, deadline: float) -> UpstreamConnection:
        timeout = max(0.0, deadline - self.loop.time())
        try:
            async with asyncio.timeout(timeout):
                _, proto = await self.loop.create_connection(
                    lambda: UpstreamConnection(self), self.host, self.port
                )
        except TimeoutError:
            raise ConnectTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise ConnectFailure(f"connect to {self.host}:{self.port}: {exc}") from None
        self.opened += 1
        return proto

    def put(self, conn: UpstreamConnection) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        for conn in list(self._idle):
            conn.close()
        self._idle.clear()
