"""Real parts on 127.0.0.1: aiohttp upstream servers, the gateway (in-process or as the console
script), and real HTTP clients. Nothing here is mocked."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from hexagon_gateway.app import GatewayProcess

TOKEN = "test-token-0123456789"
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Upstream:
    name: str
    port: int = 0
    hits: int = 0
    status: int = 200
    delay: float = 0.0
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    received_bytes: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _upstream_app(up: Upstream) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        up.hits += 1
        up.seen_headers.append({k.lower(): v for k, v in request.headers.items()})
        if up.delay:
            await asyncio.sleep(up.delay)
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        up.received_bytes += size
        resp = web.json_response(
            {"upstream": up.name, "path": request.path_qs, "method": request.method, "len": size},
            status=up.status,
            headers={"Connection": "keep-alive, X-Hop", "X-Hop": "secret", "X-Up": up.name},
        )
        if request.query.get("close"):  # an upstream that never keeps connections alive
            resp.force_close()
            del resp.headers["Connection"]
        return resp

    async def big(request: web.Request) -> web.StreamResponse:
        up.hits += 1
        total = int(request.query.get("bytes", "1000000"))
        resp = web.StreamResponse()
        if request.query.get("length") == "1":
            resp.content_length = total
        await resp.prepare(request)
        block = b"x" * 65536
        sent = 0
        while sent < total:
            part = block[: min(len(block), total - sent)]
            await resp.write(part)
            sent += len(part)
        await resp.write_eof()
        return resp

    async def stall(request: web.Request) -> web.StreamResponse:
        up.hits += 1
        resp = web.StreamResponse()
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        await asyncio.sleep(30)
        return resp

    async def ws(request: web.Request) -> web.StreamResponse:
        up.hits += 1
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await sock.send_str(f"{up.name}:{msg.data}")
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(msg.data[::-1])
        return sock

    app = web.Application(client_max_size=1024**3)
    app.router.add_get("/big", big)
    app.router.add_get("/stall", stall)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[[str], Awaitable[Upstream]]]:
    runners: list[web.AppRunner] = []

    async def start(name: str) -> Upstream:
        up = Upstream(name)
        runner = web.AppRunner(_upstream_app(up), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        up.port = runner.addresses[0][1]
        runners.append(runner)
        return up

    yield start
    for runner in runners:
        await runner.cleanup()


def gateway_config(
    upstreams: dict[str, list[str]],
    routes: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "node": {"name": "north", "namespace": "default", "topology": "demo", "ring": 1},
        "listen": {
            "data": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
        },
        "admin": {"tokenEnv": "HEXAGON_TEST_TOKEN"},
        "upstreams": [
            {"name": name, "endpoints": [{"address": a} for a in addrs]}
            for name, addrs in upstreams.items()
        ],
        "routes": routes,
    }
    doc.update(extra)
    return doc


@dataclass
class RunningGateway:
    process: GatewayProcess
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.process.data_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.process.admin_port}"

    async def metrics(self) -> str:
        async with self.session.get(f"{self.admin}/metrics") as resp:
            return await resp.text()


@pytest.fixture
async def gateway(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    monkeypatch.setenv("HEXAGON_TEST_TOKEN", TOKEN)
    started: list[RunningGateway] = []

    async def start(
        doc: dict[str, Any] | None = None, *, path: Path | None = None, grace: float = 10.0
    ) -> RunningGateway:
        process = GatewayProcess(
            config_text=None if doc is None else yaml.safe_dump(doc),
            config_path=None if path is None else str(path),
            shutdown_grace=grace,
        )
        await process.start()
        running = RunningGateway(process, aiohttp.ClientSession())
        started.append(running)
        return running

    yield start
    for running in started:
        await running.session.close()
        if not running.process.gateway.draining:
            await running.process.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Subprocess:
    proc: subprocess.Popen[bytes]
    data_port: int
    admin_port: int


@pytest.fixture
def console_script(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Subprocess]]:
    """The real `hexagon-gateway` entry point as a separate process."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(doc: dict[str, Any]) -> Subprocess:
        data_port, admin_port = free_port(), free_port()
        doc["listen"] = {
            "data": {"host": "127.0.0.1", "port": data_port},
            "admin": {"host": "127.0.0.1", "port": admin_port},
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(doc))
        exe = Path(sys.executable).parent / "hexagon-gateway"
        env = {**os.environ, "HEXAGON_TEST_TOKEN": TOKEN}
        proc = subprocess.Popen(
            [str(exe), "--config", str(path), "--shutdown-grace", "10"],
            env=env,
            stderr=open(tmp_path / "gateway.log", "ab"),  # noqa: SIM115
        )
        procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", admin_port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        return Subprocess(proc, data_port, admin_port)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def eventually(check: Callable[[], Awaitable[bool]], *, attempts: int = 100) -> None:
    """Poll a condition (hot reload, ejection) instead of sleeping a guessed time."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition never became true")
