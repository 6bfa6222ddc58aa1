"""Thin client of the gateways' admin endpoint ``PUT /config``: how a route change reaches
running pods within a second.

A volume-mounted ConfigMap is refreshed by the kubelet only every minute or so, so after
applying the ConfigMap the operator pushes the same YAML document to each Ready pod on its
admin port (token in ``X-Auth-Token``). The gateway answers 200 when it applied the document
and 400 with a message when it refused it (it then keeps serving the previous config). The
ConfigMap stays the source of truth: it is what a pod reads when it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

from . import api


@dataclass(frozen=True, slots=True)
class Target:
    pod: str
    ip: str
    port: int = api.ADMIN_PORT


@dataclass(frozen=True, slots=True)
class PushResult:
    pod: str
    ok: bool
    rejected: bool  # the gateway refused the document (400): a config error, not a transport one
    status: int  # HTTP status, 0 when no answer arrived
    message: str
    seconds: float


class GatewayClient:
    """One aiohttp session for the life of the operator; close it on shutdown."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop (aiohttp binds sessions to their loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def push(self, target: Target, *, token: str, document: str) -> PushResult:
        url = f"http://{target.ip}:{target.port}/config"
        headers = {"X-Auth-Token": token, "Content-Type": "application/yaml"}
        start = time.monotonic()
        try:
            async with self._get_session().put(url, data=document, headers=headers) as resp:
                text = (await resp.text())[:2000]
                return PushResult(
                    pod=target.pod,
                    ok=resp.status == 200,
                    rejected=resp.status == 400,
                    status=resp.status,
                    message=text.strip() or resp.reason or "",
                    seconds=time.monotonic() - start,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return PushResult(
                pod=target.pod,
                ok=False,
                rejected=False,
                status=0,
                message=f"{type(exc).__name__}: {exc}",
                seconds=time.monotonic() - start,
            )

    async def push_all(
        self, targets: Iterable[Target], *, token: str, document: str
    ) -> list[PushResult]:
        """Push to every target concurrently; one slow pod does not delay the others."""
        return list(
            await asyncio.gather(*(self.push(t, token=token, document=document) for t in targets))
        )
