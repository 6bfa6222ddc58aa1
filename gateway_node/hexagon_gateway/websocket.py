"""WebSocket pass-through: the client's upgrade is relayed to an endpoint, frames both ways.

aiohttp owns the client connection, so rather than hijacking its transport the tunnel speaks
WebSocket on both sides and relays every message unchanged (text, binary, ping/pong handled by
each side, close codes propagated). The upstream handshake carries the client's headers minus
the hop-by-hop and handshake ones, plus X-Forwarded-For, so the upstream sees the real client.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from hexagon_gateway import balancer
from hexagon_gateway.headers import HOP_BY_HOP

if TYPE_CHECKING:
    from hexagon_gateway.proxy import Proxy
    from hexagon_gateway.runtime import RouteRuntime, UpstreamRuntime

_HANDSHAKE = frozenset(
    {"host", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
     "sec-websocket-protocol", "content-length"}
)  # fmt: skip


async def _pump(
    src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for msg in src:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        else:
            break
    code = src.close_code or aiohttp.WSCloseCode.OK
    await dst.close(code=code)


async def tunnel(
    proxy: Proxy, request: web.Request, upstream: UpstreamRuntime, route: RouteRuntime
) -> web.StreamResponse:
    from hexagon_gateway.proxy import PATH_KEY, QUERY_KEY, json_error

    pool = upstream.pool
    ep = pool.pick()
    if ep is None:
        return json_error(503, "no_healthy_upstream", "no endpoint can take the request")
    peer = request.remote or ""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | _HANDSHAKE}
    headers["X-Forwarded-For"] = peer
    headers["X-Forwarded-Proto"] = request.scheme
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    path = request.get(PATH_KEY, request.path)
    qs = request.get(QUERY_KEY, "")
    url = f"ws://{ep.endpoint.host}:{ep.endpoint.port}{path}" + (f"?{qs}" if qs else "")
    session = proxy.ws_session()
    pool.start(ep)
    outcome = balancer.LOCAL_ERROR
    try:
        try:
            upstream_ws = await session.ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                autoping=True,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            outcome = balancer.CONNECT_FAILURE
            return json_error(502, "upstream_websocket_failed", str(exc) or "handshake failed")
        outcome = balancer.SUCCESS
        client_ws = web.WebSocketResponse(
            protocols=[upstream_ws.protocol] if upstream_ws.protocol else ()
        )
        await client_ws.prepare(request)
        tasks = [
            asyncio.ensure_future(_pump(client_ws, upstream_ws)),
            asyncio.ensure_future(_pump(upstream_ws, client_ws)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await upstream_ws.close()
            await client_ws.close()
        return client_ws
    finally:
        pool.finish(ep, outcome)
