"""The contract with the gateway core: build_chain validation messages, schemas, snapshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hexagon_gateway.middlewares import MIDDLEWARE_SCHEMAS, build_chain, snapshot
from hexagon_gateway.middlewares.breaker import CircuitBreaker
from hexagon_gateway.middlewares.canary import Canary
from hexagon_gateway.middlewares.jwt import JwtAuth
from hexagon_gateway.middlewares.ratelimit import RateLimit
from hexagon_gateway.middlewares.requestid import RequestId
from jsonschema import Draft202012Validator
from jwt.algorithms import ECAlgorithm

P = "routes[api].middlewares[0]"
SECRET = "x" * 32


@pytest.fixture()
def jwks_file(tmp_path: Path) -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [ECAlgorithm.to_jwk(key, as_dict=True)]}))
    return str(path)


def test_the_example_chain_from_the_config_format_builds_in_order(jwks_file: str) -> None:
    specs: list[dict[str, Any]] = [
        {"type": "requestId"},
        {
            "type": "jwt",
            "issuer": "https://issuer",
            "audiences": ["api"],
            "jwksFile": jwks_file,
            "algorithms": ["ES256"],
        },
        {"type": "rateLimit", "requestsPerSecond": 100, "burst": 200, "key": "client"},
        {
            "type": "circuitBreaker",
            "maxConcurrent": 512,
            "p99Ms": 800,
            "windowSeconds": 10,
            "minRequests": 20,
            "openSeconds": 5,
            "halfOpenRequests": 5,
        },
        {
            "type": "canary",
            "upstream": "api-v2",
            "weight": 10,
            "header": {"name": "x-canary", "value": "1"},
            "cookie": {"name": "canary", "value": "1"},
            "stickyKey": "header:x-user",
        },
    ]
    chain = build_chain(specs, route_name="api")
    assert [type(m) for m in chain] == [RequestId, JwtAuth, RateLimit, CircuitBreaker, Canary]
    for spec in specs:
        Draft202012Validator(MIDDLEWARE_SCHEMAS[spec["type"]]).validate(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"type": "gzip"},
            f"{P}.type: got 'gzip', expected one of ['canary', 'circuitBreaker', 'jwt', "
            "'rateLimit', 'requestId']",
            id="unknown-type",
        ),
        pytest.param("requestId", f"{P}: got 'requestId', expected a mapping", id="not-a-mapping"),
        pytest.param(
            {"type": "rateLimit"},
            f"{P}.requestsPerSecond: got nothing, expected a value (required)",
            id="missing-required",
        ),
        pytest.param(
            {"type": "rateLimit", "requestsPerSecond": 0},
            f"{P}.requestsPerSecond: got 0, expected a number > 0",
            id="rps-zero",
        ),
        pytest.param(
            {"type": "rateLimit", "requestsPerSecond": 5, "burst": 0},
            f"{P}.burst: got 0, expected an integer >= 1",
            id="burst-zero",
        ),
        pytest.param(
            {"type": "rateLimit", "requestsPerSecond": 5, "burst": 1.5},
            f"{P}.burst: got 1.5, expected a value of type integer",
            id="burst-float",
        ),
        pytest.param(
            {"type": "rateLimit", "requestsPerSecond": 5, "key": "ip"},
            f"{P}.key: got 'ip', expected a string matching",
            id="bad-key",
        ),
        pytest.param(
            {"type": "rateLimit", "requestsPerSecond": 5, "rps": 1},
            f"{P}.rps: got 1, expected one of the fields",
            id="unknown-field",
        ),
        pytest.param(
            {"type": "circuitBreaker", "maxConcurrent": 1, "p99Ms": 100, "openSeconds": 30,
             "maxOpenSeconds": 10},
            f"{P}.maxOpenSeconds: got 10, expected a number >= openSeconds (30)",
            id="breaker-cap-below-hold",
        ),
        pytest.param(
            {"type": "canary", "upstream": "v2"},
            f"{P}.weight: got 0.0, expected > 0, or a header or cookie match",
            id="canary-never-selects",
        ),
        pytest.param(
            {"type": "canary", "upstream": "v2", "weight": 101},
            f"{P}.weight: got 101, expected a number <= 100",
            id="canary-weight-over-100",
        ),
        pytest.param(
            {"type": "canary", "upstream": "v2", "weight": 5, "stickyKey": "ip"},
            f"{P}.stickyKey: got 'ip', expected a string matching",
            id="canary-bad-sticky",
        ),
        pytest.param(
            {"type": "canary", "upstream": "v2", "header": {"name": "x"}},
            f"{P}.header.value: got nothing, expected a value (required)",
            id="canary-header-without-value",
        ),
        pytest.param(
            {"type": "jwt", "algorithms": ["none"], "secret": SECRET},
            f"{P}.algorithms[0]: got 'none', expected one of",
            id="jwt-alg-none",
        ),
        pytest.param(
            {"type": "jwt", "algorithms": ["HS256"]},
            f"{P}.jwksFile: got None, expected exactly one of jwksFile, jwksUrl, secret, "
            "secretFile",
            id="jwt-no-key-source",
        ),
        pytest.param(
            {"type": "jwt", "algorithms": ["HS256"], "secret": SECRET, "jwksUrl": "http://x/"},
            f"{P}.jwksFile: got ['jwksUrl', 'secret'], expected exactly one of",
            id="jwt-two-key-sources",
        ),
        pytest.param(
            {"type": "jwt", "algorithms": ["RS256", "HS256"], "jwksUrl": "http://127.0.0.1/"},
            f"{P}.algorithms[1]: got 'HS256', expected one of ['RS256'",
            id="jwt-hs-with-jwks-confusion",
        ),
        pytest.param(
            {"type": "jwt", "algorithms": ["RS256"], "secret": SECRET},
            f"{P}.algorithms[0]: got 'RS256', expected one of ['HS256', 'HS384', 'HS512'] with",
            id="jwt-rs-with-secret",
        ),
        pytest.param(
            {"type": "jwt", "algorithms": ["HS256"], "secret": "short-and-secret"},
            f"{P}.secret: got <redacted>, expected a string of at least 32 characters",
            id="jwt-short-secret-redacted",
        ),
        pytest.param(
            {"type": "jwt", "algorithms": ["RS256"], "jwksFile": "/nonexistent/jwks.json"},
            f"{P}.jwksFile: got '/nonexistent/jwks.json', expected a readable file",
            id="jwt-jwks-file-missing",
        ),
        pytest.param(
            {"type": "jwt", "algorithms": ["RS256"], "jwksUrl": "ftp://idp/jwks"},
            f"{P}.jwksUrl: got 'ftp://idp/jwks', expected a string matching",
            id="jwt-jwks-url-scheme",
        ),
        pytest.param(
            {"type": "requestId", "header": "X Request"},
            f"{P}.header: got 'X Request', expected a string matching",
            id="requestid-bad-header",
        ),
    ],
)  # fmt: skip
def test_build_chain_errors_name_field_value_and_expectation(spec: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        build_chain([spec], route_name="api")
    assert str(info.value).startswith(message), str(info.value)
    assert "short-and-secret" not in str(info.value)


def test_error_index_points_at_the_bad_entry() -> None:
    with pytest.raises(ValueError, match=r"^routes\[web\]\.middlewares\[2\]\.burst: got -1"):
        build_chain(
            [
                {"type": "requestId"},
                {"type": "rateLimit", "requestsPerSecond": 1},
                {"type": "rateLimit", "requestsPerSecond": 1, "burst": -1},
            ],
            route_name="web",
        )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "expected a JSON JWKS document", id="not-json"),
        pytest.param('{"keys": []}', "expected at least one RSA, EC or OKP", id="no-keys"),
    ],
)
def test_bad_jwks_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content)
    spec = {"type": "jwt", "algorithms": ["ES256"], "jwksFile": str(path)}
    with pytest.raises(ValueError, match=message):
        build_chain([spec], route_name="api")


@pytest.mark.parametrize(
    ("content", "ok"),
    [
        pytest.param("k" * 32 + "\n", True, id="trailing-newline-stripped"),
        pytest.param("k" * 31 + "\n", False, id="too-short"),
    ],
)
def test_secret_file(tmp_path: Path, content: str, ok: bool) -> None:
    path = tmp_path / "secret"
    path.write_text(content)
    spec = {"type": "jwt", "algorithms": ["HS256"], "secretFile": str(path)}
    if ok:
        assert len(build_chain([spec], route_name="api")) == 1
    else:
        with pytest.raises(
            ValueError, match=r"secretFile: got .*/secret., expected a secret of at least 32 bytes"
        ):
            build_chain([spec], route_name="api")


@pytest.mark.parametrize("name", sorted(MIDDLEWARE_SCHEMAS))
def test_every_schema_is_closed_and_valid(name: str) -> None:
    schema = MIDDLEWARE_SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["type"] == {"const": name}
    for prop in schema["properties"].values():
        if prop.get("type") == "object":
            assert prop["additionalProperties"] is False


def test_snapshot_sums_counters_and_reports_worst_breaker() -> None:
    clock = [0.0]
    chain = build_chain(
        [
            {"type": "requestId"},
            {"type": "rateLimit", "requestsPerSecond": 1, "burst": 1},
            {"type": "circuitBreaker", "maxConcurrent": 1, "p99Ms": 10, "minRequests": 1},
            {"type": "circuitBreaker", "maxConcurrent": 3, "p99Ms": 10},
        ],
        route_name="api",
        clock=lambda: clock[0],
    )
    limiter, tripping = chain[1], chain[2]
    assert isinstance(limiter, RateLimit) and isinstance(tripping, CircuitBreaker)
    limiter.table.take("k")
    limiter.table.take("k")
    ticket = tripping.core.try_acquire()
    assert not isinstance(ticket, type(None))
    clock[0] += 1.0
    tripping.core.release(ticket, ok=True)  # type: ignore[arg-type]
    stats = snapshot(chain)
    assert stats["ratelimit_rejected_total"] == 1
    assert stats["breaker_state"] == 2  # one breaker open, the other closed: worst wins
    assert stats["breaker_inflight"] == 0
    assert stats["breaker_trips_total"] == 1
    assert stats["requestid_generated_total"] == 0
    assert snapshot([]) == {}
