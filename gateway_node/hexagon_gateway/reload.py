"""Hot reload: from the config file (polled), from SIGHUP, and from the admin `PUT /config`.

Polling `os.stat` every 0.5 s instead of inotify is deliberate: Kubernetes updates a mounted
ConfigMap by swapping a `..data` symlink, which inotify on the file path misses but a change of
the resolved inode/mtime catches. Every source goes through `apply_text`, so all three refuse an
invalid document the same way: logged, counted in `config_reloads_total{result="failed"}`, and
the previous generation keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

from hexagon_gateway.config import Config, ConfigError, load_config
from hexagon_gateway.runtime import Gateway

log = logging.getLogger("hexagon_gateway.reload")
POLL_SECONDS = 0.5


@dataclass(slots=True)
class ReloadResult:
    ok: bool
    message: str
    config: Config | None = None


def apply_text(gateway: Gateway, text: str, *, source: str) -> ReloadResult:
    try:
        config = load_config(text)
        previous = gateway.runtime.config if gateway.runtime is not None else None
        gateway.apply(config)
    except ConfigError as exc:
        gateway.metrics.reloads["failed"] += 1
        log.error(
            "config refused, previous config keeps serving",
            extra={"source": source, "error": str(exc)},
        )
        return ReloadResult(ok=False, message=str(exc))
    gateway.metrics.reloads["ok"] += 1
    if previous is not None and (
        previous.data != config.data
        or previous.admin_listen != config.admin_listen
        or previous.workers != config.workers
    ):
        log.warning("listen addresses and workers change only on restart", extra={"source": source})
    log.info(
        "config applied",
        extra={"source": source, "routes": len(config.routes), "upstreams": len(config.upstreams)},
    )
    return ReloadResult(ok=True, message="applied", config=config)


def _fingerprint(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a ConfigMap's ..data swap changes the inode
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class ConfigWatcher:
    def __init__(self, gateway: Gateway, path: str, *, interval: float = POLL_SECONDS) -> None:
        self.gateway = gateway
        self.path = path
        self.interval = interval
        self._seen = _fingerprint(path)
        self._task: asyncio.Task[None] | None = None

    def reload(self, *, source: str) -> ReloadResult:
        self._seen = _fingerprint(self.path)
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            self.gateway.metrics.reloads["failed"] += 1
            log.error("config file unreadable", extra={"path": self.path, "error": str(exc)})
            return ReloadResult(ok=False, message=f"{self.path}: {exc}")
        return apply_text(self.gateway, text, source=source)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            current = _fingerprint(self.path)
            if current is not None and current != self._seen:
                self.reload(source="file")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
