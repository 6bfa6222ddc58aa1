"""Gateway config: validate one YAML document and turn it into typed, frozen dataclasses.

Validation is two passes. The JSON Schema (schema.py, published as config.schema.json) checks
shape and types, including each middleware's options; then cross-field rules the schema cannot
express (route -> upstream references, exactly one path matcher, regexes that compile, CIDRs).
Every failure is a ConfigError whose message names the field path, the value and what was
expected, because an operator reading a ConfigMap rejection needs all three to fix it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import yaml

from hexagon_gateway.schema import schema_document

# Straight from the pure schemas module, not through chains/middlewares (which import aiohttp):
# config stays importable by pure modules such as the balancer.
MIDDLEWARE_SCHEMAS: Mapping[str, Mapping[str, Any]]
try:
    from hexagon_gateway.middlewares.schemas import MIDDLEWARE_SCHEMAS
except ImportError:  # the middlewares package is not installed: no middleware type validates
    MIDDLEWARE_SCHEMAS = {}

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class ConfigError(ValueError):
    """A config document that must not be applied; the message is meant for humans."""


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    name: str | None = None
    namespace: str | None = None
    topology: str | None = None
    spoke: str | None = None
    ring: int | None = None


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_ms: int = 1000
    first_byte_ms: int = 15000
    total_ms: int = 30000


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    host: str
    port: int
    weight: int = 1
    zone: str | None = None
    ring: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx: int = 5
    consecutive_connect_failures: int = 3
    base_ejection_ms: int = 30000
    max_ejection_percent: int = 50


@dataclass(frozen=True, slots=True)
class Retries:
    attempts: int = 0
    budget_percent: float = 20.0
    retry_on: frozenset[str] = frozenset({"connect-failure"})


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    endpoints: tuple[Endpoint, ...]
    load_balancer: str = "leastRequest"
    outlier: OutlierDetection = field(default_factory=OutlierDetection)
    retries: Retries = field(default_factory=Retries)
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    value: str | None = None
    regex: str | None = None


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path_prefix: str | None = None
    path: str | None = None
    regex: str | None = None
    methods: frozenset[str] | None = None
    headers: tuple[HeaderMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: RouteMatch
    upstream: str
    timeouts: Timeouts | None = None
    max_body_bytes: int | None = None
    strip_prefix: bool = False
    middlewares: tuple[Mapping[str, Any], ...] = ()


DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_MAX_HEADER = 16384


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_header_bytes: int = DEFAULT_MAX_HEADER


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeIdentity
    data: Listen
    admin_listen: Listen
    workers: int
    token_file: str | None
    token_env: str | None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    limits: Limits
    weights: Mapping[str, int]
    upstreams: Mapping[str, Upstream]
    routes: tuple[Route, ...]
    raw: Mapping[str, Any]


def _path_text(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<document>"


def _expected(error: jsonschema.ValidationError) -> str:
    kind: Any = error.validator
    value: Any = error.validator_value
    if kind == "type":
        return f"a value of type {value}"
    if kind == "enum":
        return "one of " + ", ".join(repr(v) for v in value)
    if kind == "const":
        return f"exactly {value!r}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"a number {words[str(kind)]} {value}"
    if kind == "pattern":
        return f"a string matching {value}"
    if kind == "minLength":
        return f"a string of at least {value} characters"
    return str(error.message)


def _schema_error(error: jsonschema.ValidationError) -> ConfigError:
    path = list(error.absolute_path)
    instance: Any = error.instance
    schema: Any = error.schema
    required: Any = error.validator_value
    if error.validator == "required":
        missing = [k for k in required if k not in (instance or {})]
        return ConfigError(f"{_path_text([*path, missing[0]])}: missing, expected a value")
    if error.validator == "additionalProperties":
        allowed = set((schema or {}).get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        known = ", ".join(sorted(allowed)) or "none"
        key = extra[0] if extra else "?"
        return ConfigError(
            f"{_path_text([*path, key])}: got unknown key {key!r}, expected one of: {known}"
        )
    return ConfigError(f"{_path_text(path)}: got {error.instance!r}, expected {_expected(error)}")


_VALIDATOR: jsonschema.Draft202012Validator | None = None


def validator() -> jsonschema.Draft202012Validator:
    global _VALIDATOR
    if _VALIDATOR is None:
        schema = schema_document(MIDDLEWARE_SCHEMAS)
        jsonschema.Draft202012Validator.check_schema(schema)
        _VALIDATOR = jsonschema.Draft202012Validator(schema)
    return _VALIDATOR


def _deepest(errors: list[jsonschema.ValidationError]) -> jsonschema.ValidationError:
    # The deepest error points at the offending leaf, which is what a person wants to see.
    return max(errors, key=lambda e: (len(e.absolute_path), -len(e.schema_path)))


def _timeouts(raw: Mapping[str, Any] | None, base: Timeouts) -> Timeouts:
    raw = raw or {}
    return Timeouts(
        connect_ms=raw.get("connectMs", base.connect_ms),
        first_byte_ms=raw.get("firstByteMs", base.first_byte_ms),
        total_ms=raw.get("totalMs", base.total_ms),
    )


def _endpoint(raw: Mapping[str, Any]) -> Endpoint:
    host, _, port = str(raw["address"]).rpartition(":")
    return Endpoint(
        address=raw["address"],
        host=host.strip("[]"),
        port=int(port),
        weight=raw.get("weight", 1),
        zone=raw.get("zone"),
        ring=raw.get("ring"),
        name=raw.get("name"),
    )


def _upstream(raw: Mapping[str, Any], where: str) -> Upstream:
    endpoints = tuple(_endpoint(e) for e in raw["endpoints"])
    for i, ep in enumerate(endpoints):
        if not 0 < ep.port < 65536:
            raise ConfigError(
                f"{where}.endpoints[{i}].address: got {ep.address!r}, expected a port in 1..65535"
            )
    od, rt = raw.get("outlierDetection", {}), raw.get("retries", {})
    return Upstream(
        name=raw["name"],
        endpoints=endpoints,
        load_balancer=raw.get("loadBalancer", "leastRequest"),
        outlier=OutlierDetection(
            consecutive_5xx=od.get("consecutive5xx", 5),
            consecutive_connect_failures=od.get("consecutiveConnectFailures", 3),
            base_ejection_ms=od.get("baseEjectionMs", 30000),
            max_ejection_percent=od.get("maxEjectionPercent", 50),
        ),
        retries=Retries(
            attempts=rt.get("attempts", 0),
            budget_percent=float(rt.get("budgetPercent", 20)),
            retry_on=frozenset(rt.get("retryOn", ["connect-failure"])),
        ),
        timeouts=_timeouts(raw.get("timeouts"), Timeouts()),
    )


def _compile(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: got {pattern!r}, expected a valid regex ({exc})") from None


def _route(raw: Mapping[str, Any], where: str, upstreams: Mapping[str, Upstream]) -> Route:
    m = raw["match"]
    matchers = [k for k in ("pathPrefix", "path", "regex") if k in m]
    if len(matchers) != 1:
        raise ConfigError(
            f"{where}.match: got keys {sorted(m)!r}, "
            "expected exactly one of pathPrefix, path, regex"
        )
    if "regex" in m:
        _compile(m["regex"], f"{where}.match.regex")
    headers = []
    for i, h in enumerate(m.get("headers", [])):
        if ("value" in h) == ("regex" in h):
            raise ConfigError(
                f"{where}.match.headers[{i}]: got {dict(h)!r}, expected exactly one of value, regex"
            )
        if "regex" in h:
            _compile(h["regex"], f"{where}.match.headers[{i}].regex")
        headers.append(
            HeaderMatch(name=h["name"].lower(), value=h.get("value"), regex=h.get("regex"))
        )
    if raw["upstream"] not in upstreams:
        raise ConfigError(
            f"{where}.upstream: got {raw['upstream']!r}, expected one of the upstream names "
            f"{sorted(upstreams)!r}"
        )
    for i, spec in enumerate(raw.get("middlewares", [])):
        target = spec.get("upstream") if spec.get("type") == "canary" else None
        if target is not None and target not in upstreams:
            raise ConfigError(
                f"{where}.middlewares[{i}].upstream: got {target!r}, expected one of the "
                f"upstream names {sorted(upstreams)!r}"
            )
    methods = m.get("methods")
    return Route(
        name=raw["name"],
        match=RouteMatch(
            path_prefix=m.get("pathPrefix"),
            path=m.get("path"),
            regex=m.get("regex"),
            methods=frozenset(methods) if methods else None,
            headers=tuple(headers),
        ),
        upstream=raw["upstream"],
        timeouts=_timeouts(raw["timeouts"], upstreams[raw["upstream"]].timeouts)
        if "timeouts" in raw
        else None,
        max_body_bytes=raw.get("maxBodyBytes"),
        strip_prefix=raw.get("stripPrefix", False),
        middlewares=tuple(dict(s) for s in raw.get("middlewares", [])),
    )


def _unique(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{where}[{i}].name: got {name!r}, expected a unique name")
        seen.add(name)


def config_from_dict(doc: Any) -> Config:
    """Validate a parsed document and build the typed config (raises ConfigError)."""
    if not isinstance(doc, dict):
        raise ConfigError(f"<document>: got {type(doc).__name__}, expected a mapping")
    errors = list(validator().iter_errors(doc))
    if errors:
        raise _schema_error(_deepest(errors))
    raw_upstreams = doc.get("upstreams", [])
    _unique([u["name"] for u in raw_upstreams], "upstreams")
    upstreams = {u["name"]: _upstream(u, f"upstreams[{i}]") for i, u in enumerate(raw_upstreams)}
    raw_routes = doc.get("routes", [])
    _unique([r["name"] for r in raw_routes], "routes")
    routes = tuple(_route(r, f"routes[{i}]", upstreams) for i, r in enumerate(raw_routes))
    proxies = []
    for i, cidr in enumerate(doc.get("trustedProxies", [])):
        try:
            proxies.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ConfigError(
                f"trustedProxies[{i}]: got {cidr!r}, expected an IP address or CIDR"
            ) from None
    listen, admin, limits = doc.get("listen", {}), doc.get("admin", {}), doc.get("limits", {})
    data = listen.get("data", {})
    adm = listen.get("admin", {})
    return Config(
        node=NodeIdentity(**doc.get("node", {})),
        data=Listen(host=data.get("host", "0.0.0.0"), port=data.get("port", 8080)),
        admin_listen=Listen(host=adm.get("host", "0.0.0.0"), port=adm.get("port", 9901)),
        workers=doc.get("workers", 1),
        token_file=admin.get("tokenFile"),
        token_env=admin.get("tokenEnv"),
        trusted_proxies=tuple(proxies),
        limits=Limits(
            max_body_bytes=limits.get("maxBodyBytes", DEFAULT_MAX_BODY),
            max_header_bytes=limits.get("maxHeaderBytes", DEFAULT_MAX_HEADER),
        ),
        weights=dict(doc.get("weights", {})),
        upstreams=upstreams,
        routes=routes,
        raw=doc,
    )


def load_config(text: str) -> Config:
    """Parse YAML text and validate it; every failure is a ConfigError naming the field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"<document>: got invalid YAML, expected one YAML mapping ({exc})"
        ) from None
    return config_from_dict(doc)
