"""Admin port, hot reload and graceful shutdown, against the in-process gateway."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from .conftest import TOKEN, RunningGateway, Upstream, eventually, gateway_config

Start = Callable[..., Awaitable[RunningGateway]]
Ups = Callable[[str], Awaitable[Upstream]]
AUTH = {"X-Auth-Token": TOKEN}


def one_route(address: str, name: str = "a") -> dict[str, object]:
    return gateway_config(
        {name: [address]}, [{"name": "r", "match": {"pathPrefix": "/"}, "upstream": name}]
    )


async def test_health_ready_and_metrics(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(one_route(up.address))
    async with gw.session.get(f"{gw.admin}/healthz") as resp:
        assert resp.status == 200
    async with gw.session.get(f"{gw.admin}/readyz") as resp:
        assert resp.status == 200
    async with gw.session.get(f"{gw.url}/x") as resp:
        assert resp.status == 200
    async with gw.session.get(f"{gw.admin}/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    labels = 'hexagon_node="north",hexagon_topology="demo",hexagon_ring="1"'
    assert f'hexagon_gateway_requests_total{{{labels},code="200",route="r",upstream="a"}} 1' in text
    assert (
        f'hexagon_gateway_request_duration_seconds_bucket{{{labels},route="r",le="+Inf"}} 1' in text
    )
    assert "hexagon_gateway_requests_in_flight" in text
    assert "hexagon_gateway_config_reloads_total{" in text


async def test_not_ready_without_valid_config(gateway: Start) -> None:
    gw = await gateway({"version": 1, "listen": {"data": {"host": "127.0.0.1", "port": 0},
                        "admin": {"host": "127.0.0.1", "port": 0}}, "routes": "nope"})  # fmt: skip
    async with gw.session.get(f"{gw.admin}/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["status"] == "no_config"
    async with gw.session.get(f"{gw.url}/x") as resp:
        assert resp.status == 503
        assert (await resp.json())["error"] == "no_config"


async def test_probe_netstack(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(one_route(up.address))
    url = f"{gw.admin}/debug/probe?mode=netstack"
    async with gw.session.post(url, json={"timeout_ms": 2000}) as resp:
        assert resp.status == 401
    async with gw.session.post(url, json={"timeout_ms": 2000}, headers={"X-Auth-Token": "x"}) as r:
        assert r.status == 401
    async with gw.session.post(url, json={"timeout_ms": 2000}, headers=AUTH) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["mode"] == "netstack" and body["pid"] == os.getpid()
    assert body["eventLoopLagMs"] >= 0 and body["tasks"] > 0
    assert body["openSockets"] > 0 and body["openFds"] >= body["openSockets"]
    assert "Tcp" in body["snmp"] and "ActiveOpens" in body["snmp"]["Tcp"]
    assert "TCP" in body["sockstat"] and "inuse" in body["sockstat"]["TCP"]


async def test_fault_injection_applies_to_data_only(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    gw = await gateway(one_route(up.address))
    fault = {"errorRate": 1.0, "errorCode": 503, "latencyMs": 10}
    async with gw.session.post(f"{gw.admin}/debug/fault", json=fault) as resp:
        assert resp.status == 401
    async with gw.session.post(f"{gw.admin}/debug/fault", json=fault, headers=AUTH) as resp:
        assert resp.status == 200
    for _ in range(3):
        async with gw.session.get(f"{gw.url}/x") as resp:
            assert resp.status == 503
            assert (await resp.json())["error"] == "injected_fault"
    async with gw.session.get(f"{gw.admin}/healthz") as resp:
        assert resp.status == 200
    assert 'code="503"' in await gw.metrics()
    async with gw.session.delete(f"{gw.admin}/debug/fault", headers=AUTH) as resp:
        assert resp.status == 200
    async with gw.session.get(f"{gw.url}/x") as resp:
        assert resp.status == 200
    bad = {"errorRate": 2}
    async with gw.session.post(f"{gw.admin}/debug/fault", json=bad, headers=AUTH) as resp:
        assert resp.status == 400
        assert "errorRate: got 2" in (await resp.json())["message"]


async def test_put_config_applies_or_refuses(gateway: Start, upstreams: Ups) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    gw = await gateway(one_route(a.address))
    new = yaml.safe_dump(one_route(b.address, name="b"))
    async with gw.session.put(f"{gw.admin}/config", data=new) as resp:
        assert resp.status == 401
    async with gw.session.put(f"{gw.admin}/config", data=new, headers=AUTH) as resp:
        assert resp.status == 200
    async with gw.session.get(f"{gw.url}/x") as resp:
        assert (await resp.json())["upstream"] == "b"
    broken = yaml.safe_dump({**one_route(a.address), "workers": 0})
    async with gw.session.put(f"{gw.admin}/config", data=broken, headers=AUTH) as resp:
        assert resp.status == 400
        assert (await resp.json())["message"] == "workers: got 0, expected a number >= 1"
    async with gw.session.get(f"{gw.url}/x") as resp:  # the previous config keeps serving
        assert (await resp.json())["upstream"] == "b"
    text = await gw.metrics()
    assert 'result="failed"} 1' in text and 'result="ok"} 2' in text


async def test_hot_reload_from_file(gateway: Start, upstreams: Ups, tmp_path: Path) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(one_route(a.address)))
    gw = await gateway(path=path)

    async def serves(name: str) -> bool:
        async with gw.session.get(f"{gw.url}/x") as resp:
            return bool((await resp.json())["upstream"] == name)

    assert await serves("a")
    # Kubernetes swaps a ConfigMap by renaming a new file into place: a new inode.
    fresh = tmp_path / "next.yaml"
    fresh.write_text(yaml.safe_dump(one_route(b.address, name="b")))
    fresh.replace(path)
    await eventually(lambda: serves("b"))
    path.write_text("version: 1\nroutes: [{name: r}]\n")  # invalid: refused, b keeps serving

    async def refused() -> bool:
        return 'result="failed"} 1' in await gw.metrics()

    await eventually(refused)
    assert await serves("b")
    async with gw.session.get(f"{gw.admin}/readyz") as resp:
        assert resp.status == 200


async def test_reload_keeps_in_flight_request(gateway: Start, upstreams: Ups) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    a.delay = 0.5
    gw = await gateway(one_route(a.address))
    pending = asyncio.ensure_future(gw.session.get(f"{gw.url}/slow"))
    await eventually(lambda: _true(a.hits == 1))
    async with gw.session.put(
        f"{gw.admin}/config", data=yaml.safe_dump(one_route(b.address, name="b")), headers=AUTH
    ) as resp:
        assert resp.status == 200
    resp = await pending
    assert resp.status == 200 and (await resp.json())["upstream"] == "a"
    resp.release()


async def _true(value: bool) -> bool:
    return value


async def test_graceful_shutdown_finishes_in_flight(gateway: Start, upstreams: Ups) -> None:
    up = await upstreams("a")
    up.delay = 0.5
    gw = await gateway(one_route(up.address))
    pending = asyncio.ensure_future(gw.session.get(f"{gw.url}/slow"))
    await eventually(lambda: _true(up.hits == 1))
    stopping = asyncio.ensure_future(gw.process.stop())
    await eventually(lambda: _true(gw.process.gateway.draining))
    resp = await pending
    assert resp.status == 200 and (await resp.json())["upstream"] == "a"
    resp.release()
    await stopping
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", gw.process.data_port)
    except OSError:
        pass  # refused: not accepting any more
    else:
        writer.close()
        raise AssertionError("the data port still accepts connections after shutdown")
