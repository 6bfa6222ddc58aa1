"""Typed operator settings from HEXAGON_* environment variables, validated once at start.

Builders and the reconciler receive a ``Settings`` value instead of reading the environment
themselves, so they stay pure and tests pass settings in directly. A bad variable stops the
operator at start with a message naming it, rather than failing later in a handler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """An environment variable with a value the operator cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    gateway_image: str = "hexagon/gateway:dev"
    prometheus_url: str = "http://prometheus:9090"
    poll_interval_seconds: float = 5.0
    # Empty means cluster-wide; otherwise the operator watches only these namespaces.
    namespaces: tuple[str, ...] = ()
    # Standalone: no peering (tests, local runs). In production peering keeps one active operator.
    standalone: bool = False
    peering_name: str = "hexagon"
    # Periodic re-reconcile of every node: heals drift and refreshes status that no event covers.
    resync_seconds: float = 30.0
    # kopf watch timeouts: without them a silently dropped watch is never noticed.
    watch_server_timeout_seconds: int = 270
    watch_client_timeout_seconds: int = 300
    # Budget of one PUT /config to a gateway pod.
    push_timeout_seconds: float = 2.0
    gateway_run_as_user: int = 65532
    log_json: bool = True
    liveness_port: int = 0  # 0 disables kopf's liveness endpoint


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: got {raw!r}, expected true or false")


def _num(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: got {raw!r}, expected a number") from None
    if value < minimum:
        raise ConfigError(f"{name}: got {raw!r}, expected a number >= {minimum:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: got {raw!r}, expected an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}: got {raw!r}, expected an integer >= {minimum}")
    return value


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; ``env`` defaults to ``os.environ``."""
    e = os.environ if env is None else env
    d = Settings()
    namespaces = tuple(
        ns.strip() for ns in e.get("HEXAGON_NAMESPACES", "").split(",") if ns.strip()
    )
    server = _int(e, "HEXAGON_WATCH_SERVER_TIMEOUT", d.watch_server_timeout_seconds, minimum=1)
    client = _int(e, "HEXAGON_WATCH_CLIENT_TIMEOUT", d.watch_client_timeout_seconds, minimum=1)
    if client <= server:
        raise ConfigError(
            f"HEXAGON_WATCH_CLIENT_TIMEOUT: got {client}, expected more than "
            f"HEXAGON_WATCH_SERVER_TIMEOUT ({server}) so the server ends a watch first"
        )
    image = e.get("HEXAGON_GATEWAY_IMAGE", d.gateway_image).strip()
    if not image:
        raise ConfigError("HEXAGON_GATEWAY_IMAGE: got '', expected an image reference")
    return Settings(
        gateway_image=image,
        prometheus_url=e.get("HEXAGON_PROMETHEUS_URL", d.prometheus_url).rstrip("/"),
        poll_interval_seconds=_num(
            e, "HEXAGON_POLL_INTERVAL_SECONDS", d.poll_interval_seconds, minimum=0.1
        ),
        namespaces=namespaces,
        standalone=_bool(e, "HEXAGON_STANDALONE", d.standalone),
        peering_name=e.get("HEXAGON_PEERING_NAME", d.peering_name) or d.peering_name,
        resync_seconds=_num(e, "HEXAGON_RESYNC_SECONDS", d.resync_seconds, minimum=1),
        watch_server_timeout_seconds=server,
        watch_client_timeout_seconds=client,
        push_timeout_seconds=_num(
            e, "HEXAGON_PUSH_TIMEOUT_SECONDS", d.push_timeout_seconds, minimum=0.1
        ),
        gateway_run_as_user=_int(
            e, "HEXAGON_GATEWAY_RUN_AS_USER", d.gateway_run_as_user, minimum=1
        ),
        log_json=_bool(e, "HEXAGON_LOG_JSON", d.log_json),
        liveness_port=_int(e, "HEXAGON_LIVENESS_PORT", d.liveness_port, minimum=0),
    )
