"""Pipeline-failure messages are stable from poll to poll (status is written only on change)."""

from __future__ import annotations

import pytest
from hexagon_operator.health.source import _short


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "HTTPConnectionPool(host='p', port=9090): Max retries exceeded (Caused by "
            "NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f3a2c1d0e50>: "
            "Failed to establish a new connection: [Errno 111] Connection refused'))",
            "HTTPConnectionPool(host='p', port=9090): Max retries exceeded (Caused by "
            "NewConnectionError('<urllib3.connection.HTTPConnection>: "
            "Failed to establish a new connection: [Errno 111] Connection refused'))",
            id="urllib3-object-address",
        ),
        pytest.param("timed out", "timed out", id="plain"),
        pytest.param("x" * 400, "x" * 300 + "...", id="truncated"),
    ],
)
def test_failure_text_has_no_object_addresses(text: str, expected: str) -> None:
    assert _short(RuntimeError(text)) == expected
