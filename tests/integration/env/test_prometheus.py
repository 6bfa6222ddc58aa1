"""Prometheus is real: it scrapes a live local target and answers PromQL over it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from testenv.prometheus import Prometheus, static_config

pytestmark = pytest.mark.prometheus


class _Metrics(http.server.BaseHTTPRequestHandler):
    value = 41.0

    def do_GET(self) -> None:
        body = (f'# TYPE smoke_value gauge\nsmoke_value{{kind="answer"}} {self.value}\n').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def target() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_prometheus_scrapes_a_local_target(
    prometheus: Callable[[Mapping[str, Any]], Prometheus], target: str
) -> None:
    _Metrics.value = 42.0
    prom = prometheus(static_config({"smoke": [target]}))
    prom.wait_for_target("smoke")
    result = prom.wait_for_samples('smoke_value{kind="answer"}')
    assert float(result[0]["value"][1]) == 42.0
    assert result[0]["metric"]["instance"] == target
    up = prom.query('up{job="smoke"}')
    assert float(up[0]["value"][1]) == 1.0
