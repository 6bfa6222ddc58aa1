"""Config validation: every error names the field path, the value and what was expected."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hexagon_gateway.chains import MIDDLEWARE_SCHEMAS
from hexagon_gateway.config import ConfigError, config_from_dict, load_config
from hexagon_gateway.schema import SCHEMA_PATH, render_schema

VALID = """
version: 1
node: {name: north, namespace: default, topology: demo, spoke: north, ring: 1}
listen:
  data: {host: 0.0.0.0, port: 8080}
  admin: {host: 0.0.0.0, port: 9901}
workers: 2
admin: {tokenEnv: HEXAGON_ADMIN_TOKEN}
trustedProxies: ["10.0.0.0/8", "192.168.1.1"]
limits: {maxBodyBytes: 1048576, maxHeaderBytes: 8192}
weights: {pod-a: 0}
upstreams:
  - name: api
    endpoints:
      - {address: "127.0.0.1:9000", weight: 2, zone: "a", ring: 1, name: pod-a}
      - {address: "[::1]:9001"}
    loadBalancer: roundRobin
    outlierDetection:
      consecutive5xx: 3
      consecutiveConnectFailures: 2
      baseEjectionMs: 1000
      maxEjectionPercent: 50
    retries: {attempts: 2, budgetPercent: 20, retryOn: [connect-failure, 5xx]}
    timeouts: {connectMs: 100, firstByteMs: 200, totalMs: 300}
routes:
  - name: api
    match:
      pathPrefix: /api
      methods: [GET, POST]
      headers: [{name: X-Env, value: prod}, {name: x-t, regex: "[a-z]+"}]
    upstream: api
    timeouts: {connectMs: 50}
    maxBodyBytes: 10
    stripPrefix: true
    middlewares:
      - {type: requestId}
"""


def base() -> dict[str, Any]:
    doc = yaml.safe_load(VALID)
    assert isinstance(doc, dict)
    return doc


def test_valid_document_is_typed() -> None:
    config = load_config(VALID)
    assert config.workers == 2
    assert config.node.name == "north"
    up = config.upstreams["api"]
    assert up.endpoints[1].host == "::1" and up.endpoints[1].port == 9001
    assert up.retries.retry_on == frozenset({"connect-failure", "5xx"})
    route = config.routes[0]
    assert route.match.methods == frozenset({"GET", "POST"})
    assert route.match.headers[0].name == "x-env"
    # a per-route override inherits the fields it does not set from the upstream
    assert route.timeouts is not None
    assert (route.timeouts.connect_ms, route.timeouts.first_byte_ms) == (50, 200)
    assert config.limits.max_header_bytes == 8192
    assert str(config.trusted_proxies[1]) == "192.168.1.1/32"


def test_minimal_document_gets_defaults() -> None:
    config = load_config("version: 1\n")
    assert (config.data.port, config.admin_listen.port, config.workers) == (8080, 9901, 1)
    assert config.routes == () and dict(config.upstreams) == {}


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = doc
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "fragments"),
    [
        pytest.param("version", 2, ["version", "2", "exactly 1"], id="version-const"),
        pytest.param("version", _DELETE, ["version", "missing"], id="version-missing"),
        pytest.param("workers", 0, ["workers", "0", ">= 1"], id="workers-min"),
        pytest.param("workers", "two", ["workers", "'two'", "integer"], id="workers-type"),
        pytest.param(
            "listen.data.port", 70000, ["listen.data.port", "70000", "<= 65535"], id="port-max"
        ),
        pytest.param("bogus", 1, ["bogus", "unknown key", "version"], id="unknown-top-key"),
        pytest.param(
            "upstreams.0.endpoints.0.address",
            "nohost",
            ["upstreams[0].endpoints[0].address", "'nohost'", "matching"],
            id="address-pattern",
        ),
        pytest.param(
            "upstreams.0.endpoints.0.weight",
            101,
            ["upstreams[0].endpoints[0].weight", "101", "<= 100"],
            id="weight-max",
        ),
        pytest.param(
            "upstreams.0.loadBalancer",
            "random",
            ["upstreams[0].loadBalancer", "'random'", "'leastRequest'"],
            id="lb-enum",
        ),
        pytest.param(
            "upstreams.0.retries.retryOn",
            ["always"],
            ["upstreams[0].retries.retryOn[0]", "'always'", "connect-failure"],
            id="retry-on-enum",
        ),
        pytest.param(
            "upstreams.0.outlierDetection.maxEjectionPercent",
            150,
            ["maxEjectionPercent", "150", "<= 100"],
            id="ejection-percent",
        ),
        pytest.param(
            "upstreams.0.timeouts.connectMs",
            0,
            ["upstreams[0].timeouts.connectMs", "0", ">= 1"],
            id="timeout-min",
        ),
        pytest.param(
            "routes.0.upstream",
            "nope",
            ["routes[0].upstream", "'nope'", "upstream names"],
            id="unknown-upstream",
        ),
        pytest.param(
            "routes.0.match.path",
            "/x",
            ["routes[0].match", "exactly one of pathPrefix, path, regex"],
            id="two-matchers",
        ),
        pytest.param(
            "routes.0.match.pathPrefix",
            "api",
            ["routes[0].match.pathPrefix", "'api'", "matching ^/"],
            id="prefix-slash",
        ),
        pytest.param(
            "routes.0.match.methods",
            ["FETCH"],
            ["routes[0].match.methods[0]", "'FETCH'", "'GET'"],
            id="method-enum",
        ),
        pytest.param(
            "routes.0.match.headers.1.regex",
            "([",
            ["routes[0].match.headers[1].regex", "'(['", "valid regex"],
            id="bad-header-regex",
        ),
        pytest.param(
            "routes.0.match.headers.0.regex",
            "x",
            ["routes[0].match.headers[0]", "exactly one of value, regex"],
            id="value-and-regex",
        ),
        pytest.param(
            "routes.0.middlewares.0.type",
            "magic",
            ["routes[0].middlewares[0].type", "'magic'", "'requestId'"],
            id="middleware-type",
        ),
        pytest.param(
            "routes.0.stripPrefix",
            "yes",
            ["routes[0].stripPrefix", "'yes'", "boolean"],
            id="strip-type",
        ),
        pytest.param(
            "trustedProxies.0",
            "10.0.0.0/33",
            ["trustedProxies[0]", "'10.0.0.0/33'", "CIDR"],
            id="bad-cidr",
        ),
        pytest.param(
            "weights", {"pod": -1}, ["weights.pod", "-1", ">= 0"], id="weight-override-min"
        ),
        pytest.param("node.ring", 5, ["node.ring", "5", "<= 2"], id="ring-max"),
    ],
)
def test_errors_name_path_value_and_expectation(
    path: str, value: Any, fragments: list[str]
) -> None:
    doc = _set(base(), path, value)
    with pytest.raises(ConfigError) as info:
        config_from_dict(doc)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_regex_route_must_compile() -> None:
    doc = base()
    doc["routes"][0]["match"] = {"regex": "(unclosed"}
    with pytest.raises(ConfigError, match=r"routes\[0\]\.match\.regex: got '\(unclosed'"):
        config_from_dict(doc)


def test_duplicate_route_names_are_refused() -> None:
    doc = base()
    doc["routes"].append(dict(doc["routes"][0]))
    with pytest.raises(ConfigError, match=r"routes\[1\]\.name: got 'api', expected a unique name"):
        config_from_dict(doc)


def test_canary_target_must_exist() -> None:
    doc = base()
    doc["routes"][0]["middlewares"] = [{"type": "canary", "upstream": "ghost", "weight": 10}]
    with pytest.raises(ConfigError, match=r"routes\[0\]\.middlewares\[0\]\.upstream: got 'ghost'"):
        config_from_dict(doc)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("version: [1", "invalid YAML", id="bad-yaml"),
        pytest.param("- 1\n- 2\n", "expected a mapping", id="not-a-mapping"),
    ],
)
def test_unparseable_documents(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config(text)


def test_published_schema_is_current() -> None:
    """config.schema.json is generated: `python -m hexagon_gateway.schema` after a change."""
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(MIDDLEWARE_SCHEMAS)
    assert json.loads(SCHEMA_PATH.read_text())["$schema"].endswith("2020-12/schema")
