"""The admin port: health, readiness, metrics, the netstack probe, fault injection, config push.

It is a separate aiohttp application on its own port so that data-plane routing can never
shadow it and so it can be firewalled apart. Everything under /debug and PUT /config needs the
`X-Auth-Token` header, compared in constant time; with no token configured those endpoints are
closed (403), never open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hexagon_gateway.faults import FaultError, hang_event_loop, parse_fault
from hexagon_gateway.reload import apply_text
from hexagon_gateway.runtime import Gateway

GATEWAY_KEY = web.AppKey("gateway", Gateway)
PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class LagMonitor:
    """Samples event-loop lag: how late a timer fires compared to when it was due."""

    interval: float = 0.25
    last_ms: float = 0.0
    max_ms: float = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, (loop.time() - due) * 1000.0)
            self.last_ms = lag
            self.max_ms = max(self.max_ms * 0.9, lag)


LAG_KEY = web.AppKey("lag", LagMonitor)


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")


def _authorized(request: web.Request) -> web.Response | None:
    token = request.app[GATEWAY_KEY].token
    if not token:
        return _json(403, {"error": "forbidden", "message": "no admin token is configured"})
    given = request.headers.get("X-Auth-Token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _json(401, {"error": "unauthorized", "message": "missing or wrong X-Auth-Token"})
    return None


async def healthz(request: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    if gateway.draining:
        return _json(503, {"status": "draining"})
    if gateway.runtime is None:
        return _json(503, {"status": "no_config"})
    return _json(200, {"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    text = request.app[GATEWAY_KEY].metrics.render()
    return web.Response(body=text.encode(), headers={"Content-Type": PROM_CONTENT_TYPE})


def _parse_table_file(path: str) -> dict[str, dict[str, int]]:
    """/proc/net/snmp style: pairs of lines `Proto: names...` / `Proto: values...`."""
    out: dict[str, dict[str, int]] = {}
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        proto, _, keys = names.partition(":")
        _, _, vals = values.partition(":")
        with contextlib.suppress(ValueError):
            out[proto] = dict(zip(keys.split(), map(int, vals.split()), strict=False))
    return out


def _parse_sockstat(path: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        proto, _, rest = line.partition(":")
        words = rest.split()
        with contextlib.suppress(ValueError):
            out[proto] = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return out


def _fds() -> tuple[int, int]:
    fds = sockets = 0
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return -1, -1
    for name in names:
        fds += 1
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                sockets += 1
    return fds, sockets


async def _netstack(gateway: Gateway, lag: LagMonitor) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.sleep(0)
    immediate_ms = (loop.time() - t0) * 1000.0
    fds, sockets = _fds()
    runtime = gateway.runtime
    upstreams = {}
    if runtime is not None:
        for name, up in runtime.upstreams.items():
            upstreams[name] = {
                "endpoints": len(up.pool.endpoints),
                "ejected": up.pool.ejected_count(),
                "activeRequests": up.pool.active_requests,
            }
    return {
        "mode": "netstack",
        "pid": os.getpid(),
        "eventLoopLagMs": round(max(immediate_ms, lag.last_ms), 3),
        "eventLoopLagMaxMs": round(lag.max_ms, 3),
        "tasks": len(asyncio.all_tasks()),
        "openFds": fds,
        "openSockets": sockets,
        "inFlight": gateway.metrics.in_flight,
        "draining": gateway.draining,
        "configLoaded": runtime is not None,
        "idleUpstreamConnections": sum(p.idle_count for p in gateway.pools.values()),
        "upstreams": upstreams,
        "snmp": _parse_table_file("/proc/net/snmp"),
        "sockstat": _parse_sockstat("/proc/net/sockstat"),
        "time": time.time(),
    }


async def probe(request: web.Request) -> web.Response:
    denied = _authorized(request)
    if denied is not None:
        return denied
    mode = request.query.get("mode", "netstack")
    if mode != "netstack":
        return _json(
            400, {"error": "bad_mode", "message": f"mode: got {mode!r}, expected netstack"}
        )
    timeout_ms = 5000
    if request.can_read_body:
        try:
            body = await request.json()
            timeout_ms = int(body.get("timeout_ms", timeout_ms))
        except (ValueError, TypeError, AttributeError):
            return _json(400, {"error": "bad_body", "message": 'expected {"timeout_ms": N}'})
    budget = max(1, min(timeout_ms, 60_000)) / 1000.0 * 0.8
    try:
        async with asyncio.timeout(budget):
            payload = await _netstack(request.app[GATEWAY_KEY], request.app[LAG_KEY])
    except TimeoutError:
        payload = {"mode": "netstack", "partial": True, "pid": os.getpid()}
    return _json(200, payload)


async def set_fault(request: web.Request) -> web.Response:
    denied = _authorized(request)
    if denied is not None:
        return denied
    try:
        latency, rate, code, hang, duration = parse_fault(await request.json())
    except (FaultError, ValueError) as exc:
        return _json(400, {"error": "bad_fault", "message": str(exc)})
    faults = request.app[GATEWAY_KEY].faults
    faults.latency_ms, faults.error_rate, faults.error_code = latency, rate, code
    faults.until = None if duration is None else faults.clock() + duration
    if hang:
        # Reply first, then wedge the loop: the caller learns the hang started.
        asyncio.get_running_loop().call_later(0.05, hang_event_loop, duration)
    return _json(200, {"fault": faults.describe(), "hang": hang})


async def get_fault(request: web.Request) -> web.Response:
    denied = _authorized(request)
    return denied or _json(200, {"fault": request.app[GATEWAY_KEY].faults.describe()})


async def clear_fault(request: web.Request) -> web.Response:
    denied = _authorized(request)
    if denied is not None:
        return denied
    request.app[GATEWAY_KEY].faults.clear()
    return _json(200, {"fault": None})


async def put_config(request: web.Request) -> web.Response:
    denied = _authorized(request)
    if denied is not None:
        return denied
    text = await request.text()
    result = apply_text(request.app[GATEWAY_KEY], text, source="admin")
    if not result.ok:
        return _json(400, {"error": "invalid_config", "message": result.message})
    return _json(200, {"status": "applied"})


async def _lag_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(app[LAG_KEY].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_admin_app(gateway: Gateway) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[GATEWAY_KEY] = gateway
    app[LAG_KEY] = LagMonitor()
    app.cleanup_ctx.append(_lag_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/debug/probe", probe)
    app.router.add_post("/debug/fault", set_fault)
    app.router.add_get("/debug/fault", get_fault)
    app.router.add_delete("/debug/fault", clear_fault)
    app.router.add_put("/config", put_config)
    return app
