"""Settings from HEXAGON_* variables: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest
from hexagon_operator.config import ConfigError, Settings, from_env


def test_empty_environment_gives_defaults() -> None:
    assert from_env({}) == Settings()


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        pytest.param({"HEXAGON_NAMESPACES": "a, b,,"}, "namespaces", ("a", "b"), id="namespaces"),
        pytest.param({"HEXAGON_STANDALONE": "true"}, "standalone", True, id="standalone"),
        pytest.param({"HEXAGON_STANDALONE": "0"}, "standalone", False, id="standalone-off"),
        pytest.param(
            {"HEXAGON_POLL_INTERVAL_SECONDS": "2.5"}, "poll_interval_seconds", 2.5, id="poll"
        ),
        pytest.param(
            {"HEXAGON_PROMETHEUS_URL": "http://p:9090/"},
            "prometheus_url",
            "http://p:9090",
            id="prom-url-trailing-slash",
        ),
        pytest.param({"HEXAGON_GATEWAY_IMAGE": "g:1"}, "gateway_image", "g:1", id="image"),
    ],
)
def test_parsed(env: dict[str, str], attr: str, expected: object) -> None:
    assert getattr(from_env(env), attr) == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"HEXAGON_STANDALONE": "maybe"}, "HEXAGON_STANDALONE", id="bad-bool"),
        pytest.param({"HEXAGON_RESYNC_SECONDS": "0"}, "HEXAGON_RESYNC_SECONDS", id="too-small"),
        pytest.param({"HEXAGON_RESYNC_SECONDS": "x"}, "HEXAGON_RESYNC_SECONDS", id="not-number"),
        pytest.param({"HEXAGON_GATEWAY_IMAGE": " "}, "HEXAGON_GATEWAY_IMAGE", id="empty-image"),
        pytest.param(
            {"HEXAGON_WATCH_SERVER_TIMEOUT": "300", "HEXAGON_WATCH_CLIENT_TIMEOUT": "300"},
            "HEXAGON_WATCH_CLIENT_TIMEOUT",
            id="client-timeout-not-above-server",
        ),
    ],
)
def test_invalid(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        from_env(env)
