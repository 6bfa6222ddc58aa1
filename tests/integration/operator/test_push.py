"""The operator's config push against the real gateway process (PUT /config on its admin
port), on 127.0.0.1: the contract between gatewayclient.py and the gateway's admin API, and
proof that the document the operator renders is one the gateway accepts and hot-reloads."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hexagon_operator import api
from hexagon_operator.gatewayclient import GatewayClient, Target
from hexagon_operator.resources.configmap import dump_config, render_config

TOKEN = "push-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def document(token_file: Path, data: int, admin: int, routes: list[str]) -> str:
    spec = api.parse_spec(
        {
            "topology": "t",
            "spoke": "west",
            "gateway": {
                "upstreams": [{"name": "void", "endpoints": [{"address": "127.0.0.1:9"}]}],
                "routes": [
                    {"name": r, "match": {"pathPrefix": f"/{r}"}, "upstream": "void"}
                    for r in routes
                ],
            },
        }
    )
    doc: dict[str, Any] = render_config(api.NodeRef(name="w", namespace="ns", uid="u"), spec)
    doc["listen"] = {
        "data": {"host": "127.0.0.1", "port": data},
        "admin": {"host": "127.0.0.1", "port": admin},
    }
    doc["admin"] = {"tokenFile": str(token_file)}
    return dump_config(doc)


class Gateway:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token_file = tmp / "token"
        self.token_file.write_text(TOKEN)
        self.data, self.admin = free_port(), free_port()

    def doc(self, routes: list[str]) -> str:
        return document(self.token_file, self.data, self.admin, routes)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path)
    config = tmp_path / "gateway.yaml"
    config.write_text(gw.doc(["a"]))
    exe = Path(sys.executable).with_name("hexagon-gateway")
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen([str(exe), "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while status_of(f"http://127.0.0.1:{gw.admin}/healthz") != 200:
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        yield gw
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


async def test_push_applies_a_new_route_without_restart(gateway: Gateway) -> None:
    client = GatewayClient(timeout_seconds=5)
    target = Target(pod="w-0", ip="127.0.0.1", port=gateway.admin)
    try:
        assert status_of(f"http://127.0.0.1:{gateway.data}/b") == 404
        result = await client.push(target, token=TOKEN, document=gateway.doc(["a", "b"]))
        print(f"FIGURE push round trip: {result.seconds * 1000:.1f} ms")
        assert (result.ok, result.status) == (True, 200), result.message
        assert status_of(f"http://127.0.0.1:{gateway.data}/b") not in (0, 404)
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("token", "broken", "status", "rejected"),
    [
        pytest.param(TOKEN, True, 400, True, id="invalid-config-rejected"),
        pytest.param("wrong", False, 401, False, id="wrong-token"),
    ],
)
async def test_push_failures_are_told_apart(
    gateway: Gateway, token: str, broken: bool, status: int, rejected: bool
) -> None:
    client = GatewayClient(timeout_seconds=5)
    text = (
        gateway.doc(["a"]).replace("upstream: void", "upstream: missing")
        if broken
        else (gateway.doc(["a"]))
    )
    try:
        result = await client.push(
            Target(pod="w-0", ip="127.0.0.1", port=gateway.admin), token=token, document=text
        )
        assert (result.ok, result.status, result.rejected) == (False, status, rejected)
        assert result.message
        # the old config keeps serving
        assert status_of(f"http://127.0.0.1:{gateway.data}/a") not in (0, 404)
    finally:
        await client.close()


async def test_unreachable_pod_is_not_a_rejection() -> None:
    client = GatewayClient(timeout_seconds=2)
    try:
        result = await client.push(
            Target(pod="gone", ip="127.0.0.1", port=free_port()), token=TOKEN, document="x"
        )
        assert (result.ok, result.rejected, result.status) == (False, False, 0)
    finally:
        await client.close()
