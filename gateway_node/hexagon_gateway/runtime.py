"""Process state: the live config generation and everything built from it.

A `Runtime` is immutable and built completely before it is swapped in, which is what makes a
hot reload atomic: a request holds the generation it started with, a new request sees the new
one, and a config that fails to build never replaces a working one. Keep-alive pools are keyed by
endpoint address and outlive generations, so a reload does not close upstream connections.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hexagon_gateway import chains
from hexagon_gateway.balancer import Pool
from hexagon_gateway.config import Config, ConfigError, Route, Timeouts, Upstream
from hexagon_gateway.faults import FaultState
from hexagon_gateway.logs import set_identity
from hexagon_gateway.metrics import Labels, Metrics, node_labels
from hexagon_gateway.pool import EndpointPool
from hexagon_gateway.routing import RouteSpec, RouteTable

log = logging.getLogger("hexagon_gateway.runtime")


@dataclass(slots=True)
class UpstreamRuntime:
    config: Upstream
    pool: Pool


@dataclass(slots=True)
class RouteRuntime:
    route: Route
    timeouts: Timeouts
    max_body: int
    chain: list[Any]
    handler: chains.Handler | None = None


@dataclass(slots=True)
class Runtime:
    config: Config
    table: RouteTable[RouteRuntime]
    routes: dict[str, RouteRuntime]
    upstreams: dict[str, UpstreamRuntime]


@dataclass
class Gateway:
    """What one gateway process owns; stored on both aiohttp servers."""

    metrics: Metrics
    faults: FaultState = field(default_factory=FaultState)
    runtime: Runtime | None = None
    draining: bool = False
    token: str | None = None
    local_zone: str | None = field(default_factory=lambda: os.environ.get("HEXAGON_ZONE"))
    pools: dict[tuple[str, int], EndpointPool] = field(default_factory=dict)
    terminal: chains.Handler | None = None  # the proxy handler, set by the data app

    def endpoint_pool(self, host: str, port: int) -> EndpointPool:
        pool = self.pools.get((host, port))
        if pool is None:
            pool = self.pools[(host, port)] = EndpointPool(host, port)
        return pool

    def apply(self, config: Config) -> None:
        """Build a generation from `config` and swap it in; raises ConfigError, keeping the old."""
        assert self.terminal is not None
        runtime = build_runtime(
            config, terminal=self.terminal, previous=self.runtime, local_zone=self.local_zone
        )
        self.token = read_token(config)
        self.runtime = runtime
        node = config.node
        set_identity(namespace=node.namespace, node=node.name)
        self.metrics.const_labels = node_labels(
            name=node.name, topology=node.topology, spoke=node.spoke, ring=node.ring
        )
        live = {(ep.host, ep.port) for up in config.upstreams.values() for ep in up.endpoints}
        for key in [k for k in self.pools if k not in live]:
            self.pools.pop(key).close()  # idle ones only; busy connections finish their exchange

    def collect(self) -> Iterable[tuple[str, str, str, Labels, Labels, float]]:
        runtime = self.runtime
        if runtime is None:
            return
        for name, up in sorted(runtime.upstreams.items()):
            yield (
                "hexagon_gateway_outlier_ejections_total",
                "counter",
                "Endpoints ejected by passive outlier detection.",
                ("upstream",),
                (name,),
                float(up.pool.ejections_total),
            )
        for name, up in sorted(runtime.upstreams.items()):
            yield (
                "hexagon_gateway_outlier_ejections_active",
                "gauge",
                "Endpoints ejected right now.",
                ("upstream",),
                (name,),
                float(up.pool.ejected_count()),
            )
        snaps = [(name, chains.snapshot(rt.chain)) for name, rt in sorted(runtime.routes.items())]
        keys = sorted({k for _, snap in snaps for k in snap})
        for key in keys:
            for name, snap in snaps:
                if key in snap:
                    metric = f"hexagon_gateway_{key}"
                    kind = "counter" if key.endswith("_total") else "gauge"
                    help_text = (
                        "Circuit breaker state per route: 0 closed, 1 half-open, 2 open."
                        if key == "breaker_state"
                        else f"Middleware value {key} per route (middlewares.snapshot)."
                    )
                    yield (metric, kind, help_text, ("route",), (name,), float(snap[key]))


def read_token(config: Config) -> str | None:
    if config.token_file:
        try:
            with open(config.token_file, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError as exc:
            raise ConfigError(
                f"admin.tokenFile: got {config.token_file!r}, expected a readable file ({exc})"
            ) from None
    if config.token_env:
        return os.environ.get(config.token_env) or None
    return os.environ.get("HEXAGON_ADMIN_TOKEN") or None


def build_runtime(
    config: Config,
    *,
    terminal: chains.Handler,
    previous: Runtime | None = None,
    local_zone: str | None = None,
    clock: Callable[[], float] | None = None,
) -> Runtime:
    upstreams: dict[str, UpstreamRuntime] = {}
    for name, up in config.upstreams.items():
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        pool = Pool(
            up.endpoints,
            outlier=up.outlier,
            policy=up.load_balancer,
            weights=config.weights,
            local_zone=local_zone,
            local_ring=config.node.ring,
            retry_budget_percent=up.retries.budget_percent,
            **extra,
        )
        if previous is not None and name in previous.upstreams:
            pool.inherit(previous.upstreams[name].pool)
        upstreams[name] = UpstreamRuntime(config=up, pool=pool)
    routes: dict[str, RouteRuntime] = {}
    specs: list[RouteSpec[RouteRuntime]] = []
    for i, route in enumerate(config.routes):
        try:
            chain = chains.build_chain(list(route.middlewares), route_name=route.name)
        except ValueError as exc:
            raise ConfigError(str(exc).replace("routes[]", f"routes[{i}]", 1)) from None
        rt = RouteRuntime(
            route=route,
            timeouts=route.timeouts or config.upstreams[route.upstream].timeouts,
            max_body=route.max_body_bytes
            if route.max_body_bytes is not None
            else config.limits.max_body_bytes,
            chain=chain,
        )
        rt.handler = chains.compose(chain, terminal)
        routes[route.name] = rt
        m = route.match
        specs.append(
            RouteSpec(
                target=rt,
                path_prefix=m.path_prefix,
                path=m.path,
                regex=m.regex,
                methods=m.methods,
                headers=tuple((h.name, h.value, h.regex) for h in m.headers),
            )
        )
    return Runtime(config=config, table=RouteTable(specs), routes=routes, upstreams=upstreams)
