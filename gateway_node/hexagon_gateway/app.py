"""App factories and the lifecycle of one gateway process (one worker).

`create_app` builds the admin application (aiohttp Application, state under web.AppKey, the
lag monitor in cleanup_ctx); `create_data_server` builds the aiohttp server that connections
handed over by the fast front end (fastpath.py, which listens on the data port) continue on.
The `GatewayProcess` wires them to a Gateway, starts the config watcher and implements graceful
shutdown: stop accepting, let in-flight requests finish up to a deadline, then exit. Readiness
turns 503 first, so Kubernetes stops sending traffic while the last requests complete.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from dataclasses import dataclass, field

import yaml
from aiohttp import web

from hexagon_gateway.admin import create_admin_app
from hexagon_gateway.config import Config, ConfigError, Listen, load_config
from hexagon_gateway.fastpath import FastFront
from hexagon_gateway.metrics import Metrics
from hexagon_gateway.proxy import Proxy
from hexagon_gateway.reload import ConfigWatcher
from hexagon_gateway.runtime import Gateway
from hexagon_gateway.server import DataServer, make_server

log = logging.getLogger("hexagon_gateway.app")


def create_app(gateway: Gateway) -> web.Application:
    """The admin application."""
    return create_admin_app(gateway)


def create_data_server(gateway: Gateway) -> DataServer:
    return make_server(gateway)


@dataclass
class GatewayProcess:
    config_path: str | None = None
    config_text: str | None = None
    reuse_port: bool = False
    admin_port_offset: int = 0
    shutdown_grace: float = 25.0
    gateway: Gateway = field(default_factory=lambda: Gateway(metrics=Metrics()))
    data_port: int = 0
    admin_port: int = 0
    _data_runner: web.ServerRunner | None = None
    _admin_runner: web.AppRunner | None = None
    _watcher: ConfigWatcher | None = None
    _server: DataServer | None = None
    _front: FastFront | None = None
    _data_listener: asyncio.Server | None = None
    _sweeper: asyncio.Task[None] | None = None
    _fallback_listen: tuple[Listen, Listen] = (Listen("0.0.0.0", 8080), Listen("0.0.0.0", 9901))

    def _initial(self) -> Config | None:
        text = self.config_text
        if text is None and self.config_path is not None:
            with open(self.config_path, encoding="utf-8") as fh:
                text = fh.read()
        if text is None:
            return None
        try:
            return load_config(text)
        except ConfigError as exc:
            # Start anyway, not ready: the watcher picks up a fixed file without a restart.
            self.gateway.metrics.reloads["failed"] += 1
            log.error("initial config refused", extra={"error": str(exc)})
            self._fallback_listen = listen_section(text)
            return None

    async def start(self) -> None:
        gateway = self.gateway
        gateway.metrics.collectors.append(gateway.collect)
        self._server = create_data_server(gateway)
        config = self._initial()
        if config is not None:
            try:
                gateway.apply(config)
                gateway.metrics.reloads["ok"] += 1
            except ConfigError as exc:
                gateway.metrics.reloads["failed"] += 1
                log.error("initial config refused", extra={"error": str(exc)})
        data, admin = (config.data, config.admin_listen) if config else self._fallback_listen
        loop = asyncio.get_running_loop()
        sock = _listen(data, reuse_port=self.reuse_port)
        if os.environ.get("HEXAGON_FASTPATH", "1") != "0":
            proxy = gateway.terminal
            assert isinstance(proxy, Proxy)
            self._front = FastFront(gateway, fallback=self._server, trusted=proxy.trusted)
            self._data_listener = await loop.create_server(self._front, sock=sock)
            self._sweeper = loop.create_task(self._sweep())
        else:  # aiohttp only, for comparison and as a fallback switch
            self._data_runner = web.ServerRunner(self._server, shutdown_timeout=self.shutdown_grace)
            await self._data_runner.setup()
            await web.SockSite(self._data_runner, sock).start()
        self.data_port = int(sock.getsockname()[1])
        admin_listen = Listen(admin.host, admin.port + self.admin_port_offset if admin.port else 0)
        try:
            admin_sock = _listen(admin_listen, reuse_port=False)
        except OSError as exc:
            if self.admin_port_offset == 0:
                raise
            # Extra workers' admin ports are a convenience; worker 0 holds the real one.
            log.warning(
                "admin port unavailable", extra={"port": admin_listen.port, "error": str(exc)}
            )
        else:
            self._admin_runner = web.AppRunner(create_app(gateway), access_log=None)
            await self._admin_runner.setup()
            await web.SockSite(self._admin_runner, admin_sock).start()
            self.admin_port = int(admin_sock.getsockname()[1])
        if self.config_path is not None:
            self._watcher = ConfigWatcher(gateway, self.config_path)
            self._watcher.start()
        # Everything allocated so far lives as long as the process: keep it out of the cyclic
        # collector's generations so full collections stay cheap under load.
        gc.freeze()
        log.info(
            "gateway started", extra={"data_port": self.data_port, "admin_port": self.admin_port}
        )

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(5.0)
            if self._front is not None:
                self._front.sweep(loop.time())

    def reload(self, *, source: str = "sighup") -> None:
        if self._watcher is not None:
            self._watcher.reload(source=source)

    async def stop(self) -> None:
        """Graceful: readiness off, stop accepting, finish in-flight up to the grace deadline."""
        gateway = self.gateway
        gateway.draining = True
        log.info("draining", extra={"in_flight": gateway.metrics.in_flight})
        if self._data_listener is not None:
            self._data_listener.close()  # stop accepting
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._front is not None:
            assert self._server is not None
            await self._front.shutdown(self.shutdown_grace)
            self._server.pre_shutdown()
            await self._server.shutdown(self.shutdown_grace)
        if self._data_runner is not None:
            await self._data_runner.cleanup()
        if self._watcher is not None:
            await self._watcher.stop()
        if gateway.terminal is not None and hasattr(gateway.terminal, "close"):
            await gateway.terminal.close()
        for pool in gateway.pools.values():
            pool.close()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        log.info("stopped")


def listen_section(text: str) -> tuple[Listen, Listen]:
    """The listen addresses of a document that failed validation, where they are usable: a
    gateway with a broken config still binds the ports it was told to, and reports not-ready."""
    out = [Listen("0.0.0.0", 8080), Listen("0.0.0.0", 9901)]
    try:
        listen = yaml.safe_load(text).get("listen", {})
        for i, key in enumerate(("data", "admin")):
            part = listen.get(key)
            if isinstance(part, dict) and isinstance(part.get("port"), int):
                out[i] = Listen(str(part.get("host", "0.0.0.0")), part["port"])
    except (yaml.YAMLError, AttributeError, TypeError):
        pass
    return out[0], out[1]


def _listen(listen: Listen, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((listen.host, listen.port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def run_until_signalled(process: GatewayProcess, stop: asyncio.Event) -> None:
    await process.start()
    try:
        await stop.wait()
    finally:
        await process.stop()
