"""The operator's own HTTP port (HEXAGON_SD_PORT, default 8081; 0 disables it).

Why it exists: Debian's Prometheus (the one this project packages) has no Kubernetes service
discovery, so Prometheus finds the gateway pods through ``GET /sd/gateways`` - the HTTP-SD
list of the pods the operator watches anyway, with final labels (namespace, pod,
hexagon_node, hexagon_topology). The same port serves the operator's own metrics (heals by
outcome, step durations, breach-to-isolation latency, Prometheus poll errors) and a health
check. The chart's bundled Prometheus points at
``http://<release>-operator.<ns>.svc:8081/sd/gateways``.

A port already in use is logged, not fatal: the heal loop works without this server (only
discovery and the operator's metrics are missing), and the operator keeps reconciling.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from hexagon_operator.health.queries import http_sd_targets

if TYPE_CHECKING:  # loop.py starts this server; a runtime import would be circular
    from hexagon_operator.health.loop import HealLoop

log = logging.getLogger(__name__)
LOOP_KEY: web.AppKey[HealLoop] = web.AppKey("heal_loop")
DEFAULT_PORT = 8081
PROM_CONTENT_TYPE = "text/plain"


def port_from_env(env: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get("HEXAGON_SD_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"HEXAGON_SD_PORT: got {raw!r}, expected a port 0..65535 (0 disables)")
    return int(raw)


async def sd_gateways(request: web.Request) -> web.Response:
    loop = request.app[LOOP_KEY]
    return web.json_response(http_sd_targets(await loop.sd_targets()))


async def metrics(request: web.Request) -> web.Response:
    loop = request.app[LOOP_KEY]
    extra = [
        "# HELP hexagon_operator_polls_total Heal-loop polls of Prometheus.",
        "# TYPE hexagon_operator_polls_total counter",
        f"hexagon_operator_polls_total {loop.polls}",
        "# HELP hexagon_operator_poll_failures_total Heal-loop polls that raised (API errors).",
        "# TYPE hexagon_operator_poll_failures_total counter",
        f"hexagon_operator_poll_failures_total {loop.poll_failures}",
        "# HELP hexagon_operator_prometheus_query_errors_total Failed Prometheus polls by kind.",
        "# TYPE hexagon_operator_prometheus_query_errors_total counter",
        *(
            f'hexagon_operator_prometheus_query_errors_total{{status="{k}"}} {v}'
            for k, v in sorted(loop.source.errors.items())
        ),
        "# HELP hexagon_operator_sd_targets Gateway pods in the service-discovery list.",
        "# TYPE hexagon_operator_sd_targets gauge",
        f"hexagon_operator_sd_targets {len(loop.targets)}",
    ]
    body = loop.metrics.render() + "\n".join(extra) + "\n"
    return web.Response(text=body, content_type=PROM_CONTENT_TYPE)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def create_app(loop: HealLoop) -> web.Application:
    app = web.Application()
    app[LOOP_KEY] = loop
    app.router.add_get("/sd/gateways", sd_gateways)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(loop: HealLoop, *, port: int, host: str = "0.0.0.0") -> web.AppRunner | None:
    """Start the server; None when disabled (port 0) or the port cannot be bound."""
    if port == 0:
        return None
    runner = web.AppRunner(create_app(loop), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        log.error("operator HTTP port %s not served (%s): no HTTP SD and no metrics", port, exc)
        await runner.cleanup()
        return None
    log.info("serving /sd/gateways, /metrics and /healthz on %s:%s", host, port)
    return runner
