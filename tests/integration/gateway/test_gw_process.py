"""The real `hexagon-gateway` console script as a separate process: signals, hang, memory."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from .conftest import TOKEN, Subprocess, Upstream, eventually, gateway_config

Ups = Callable[[str], Awaitable[Upstream]]
Script = Callable[[dict[str, Any]], Subprocess]
AUTH = {"X-Auth-Token": TOKEN}


def doc_for(address: str, **extra: Any) -> dict[str, Any]:
    return gateway_config(
        {"a": [address]}, [{"name": "r", "match": {"pathPrefix": "/"}, "upstream": "a"}], **extra
    )


async def _ready(session: aiohttp.ClientSession, gw: Subprocess) -> None:
    async def ready() -> bool:
        try:
            async with session.get(f"http://127.0.0.1:{gw.admin_port}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(ready, attempts=300)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_console_script_sighup_and_sigterm(
    console_script: Script, upstreams: Ups, session: aiohttp.ClientSession
) -> None:
    up = await upstreams("a")
    up.delay = 0.5
    gw = console_script(doc_for(up.address))
    await _ready(session, gw)
    admin = f"http://127.0.0.1:{gw.admin_port}"
    gw.proc.send_signal(signal.SIGHUP)

    async def reloaded() -> bool:
        async with session.get(f"{admin}/metrics") as resp:
            return (
                'hexagon_gateway_config_reloads_total{hexagon_node="north"'
                in (text := await resp.text())
                and 'result="ok"} 2' in text
            )

    await eventually(reloaded)
    pending = asyncio.ensure_future(session.get(f"http://127.0.0.1:{gw.data_port}/slow"))
    await eventually(lambda: _true(up.hits == 1))
    gw.proc.send_signal(signal.SIGTERM)
    resp = await pending  # the in-flight request completes during the drain
    assert resp.status == 200 and (await resp.json())["upstream"] == "a"
    resp.release()
    assert await asyncio.to_thread(gw.proc.wait, 30) == 0


async def _true(value: bool) -> bool:
    return value


async def test_hang_fault_wedges_data_and_admin(
    console_script: Script, upstreams: Ups, session: aiohttp.ClientSession
) -> None:
    up = await upstreams("a")
    gw = console_script(doc_for(up.address))
    await _ready(session, gw)
    admin = f"http://127.0.0.1:{gw.admin_port}"
    probe = f"{admin}/debug/probe?mode=netstack"
    fault = {"hang": True, "durationSeconds": 6}
    async with session.post(f"{admin}/debug/fault", json=fault, headers=AUTH) as resp:
        assert resp.status == 200
    short = aiohttp.ClientTimeout(total=0.5)

    async def probe_times_out() -> bool:  # the loop wedges right after the reply went out
        try:
            async with session.post(probe, json={"timeout_ms": 400}, headers=AUTH, timeout=short):
                return False
        except TimeoutError:
            return True

    await eventually(probe_times_out, attempts=10)
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(f"{admin}/metrics", timeout=short):
            pass
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(f"http://127.0.0.1:{gw.data_port}/x", timeout=short):
            pass

    async def probe_answers() -> bool:
        try:
            async with session.post(
                probe, json={"timeout_ms": 500}, headers=AUTH, timeout=short
            ) as resp:
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    await eventually(probe_answers)  # the hang had a duration: the process recovers


def _rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def test_100mb_bodies_stream_with_flat_memory(
    console_script: Script, upstreams: Ups, session: aiohttp.ClientSession
) -> None:
    up = await upstreams("a")
    size = 100 * 1024 * 1024
    gw = console_script(doc_for(up.address, limits={"maxBodyBytes": 2 * size}))
    await _ready(session, gw)
    url = f"http://127.0.0.1:{gw.data_port}"
    async with session.get(f"{url}/warm") as resp:
        await resp.read()
    rss_before, _ = _rss_kib(gw.proc.pid)

    async def body() -> AsyncIterator[bytes]:
        block = b"z" * (1024 * 1024)
        for _ in range(100):
            yield block

    async with session.post(f"{url}/upload", data=body()) as resp:
        assert resp.status == 200
        assert (await resp.json())["len"] == size
    received = 0
    async with session.get(f"{url}/big?bytes={size}&length=1") as resp:
        async for chunk in resp.content.iter_any():
            received += len(chunk)
    assert received == size
    _, peak = _rss_kib(gw.proc.pid)
    growth_mib = (peak - rss_before) / 1024
    print(f"gateway RSS before {rss_before} KiB, peak {peak} KiB, growth {growth_mib:.1f} MiB")
    assert growth_mib < 40, f"memory grew by {growth_mib:.1f} MiB for 2 x 100 MiB bodies"


async def test_multi_worker_mode(
    console_script: Script, upstreams: Ups, session: aiohttp.ClientSession
) -> None:
    up = await upstreams("a")
    gw = console_script(doc_for(up.address, workers=2))
    await _ready(session, gw)
    for _ in range(20):
        # a new session per request: new connections, which the kernel spreads over workers
        async with (
            aiohttp.ClientSession() as fresh,
            fresh.get(f"http://127.0.0.1:{gw.data_port}/x") as resp,
        ):
            assert resp.status == 200
    gw.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(gw.proc.wait, 30) == 0
