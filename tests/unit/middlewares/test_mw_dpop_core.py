"""DPoP (RFC 9449) proof checks: signature, htm, htu, ath, iat freshness, jti replay, binding."""

from __future__ import annotations

import hashlib
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hexagon_gateway.middlewares.dpop_core import (
    ProofPolicy,
    ReplayCache,
    b64url,
    jwk_thumbprint,
    normalize_htu,
    verify_proof,
)
from hexagon_gateway.middlewares.jwt_core import TokenError
from jwt.algorithms import ECAlgorithm

NOW = 1_700_000_000.0
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
PUBLIC_JWK: dict[str, Any] = ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
PRIVATE_JWK: dict[str, Any] = ECAlgorithm.to_jwk(KEY, as_dict=True)
JKT = jwk_thumbprint(PUBLIC_JWK)
ACCESS = "the-access-token"
URL = "https://api.test/orders?page=2"


def proof(
    *,
    key: Any = KEY,
    jwk: dict[str, Any] | None = None,
    typ: str = "dpop+jwt",
    alg: str = "ES256",
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {
        "jti": "j1",
        "htm": "POST",
        "htu": "https://api.test/orders",
        "iat": NOW,
        "ath": b64url(hashlib.sha256(ACCESS.encode()).digest()),
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    header = {"typ": typ, "jwk": jwk if jwk is not None else PUBLIC_JWK}
    signing_key = key if alg != "HS256" else b"k" * 32
    return pyjwt.encode(payload, signing_key, algorithm=alg, headers=header)


def check(token: str, *, replay: ReplayCache | None = None, method: str = "POST") -> None:
    verify_proof(
        token,
        method=method,
        url=URL,
        access_token=ACCESS,
        jkt=JKT,
        policy=ProofPolicy(),
        replay=replay if replay is not None else ReplayCache(max_entries=10, clock=lambda: NOW),
        now=NOW,
    )


@pytest.mark.parametrize(
    ("token", "error"),
    [
        pytest.param(proof(), None, id="valid"),
        pytest.param(proof(htu="HTTPS://API.test:443/orders"), None, id="htu-normalised"),
        pytest.param(proof(iat=NOW - 59), None, id="iat-within-max-age"),
        pytest.param(proof(typ="JWT"), "typ must be dpop", id="wrong-typ"),
        pytest.param(proof(alg="HS256"), "algorithm not allowed", id="symmetric-alg"),
        pytest.param(proof(jwk=PRIVATE_JWK), "public jwk", id="private-key-in-header"),
        pytest.param(proof(key=OTHER), "signature invalid", id="signed-by-other-key"),
        pytest.param(
            proof(key=OTHER, jwk=ECAlgorithm.to_jwk(OTHER.public_key(), as_dict=True)),
            "does not match the token binding",
            id="unbound-key",
        ),
        pytest.param(proof(htm="GET"), "htm mismatch", id="wrong-method"),
        pytest.param(proof(htu="https://api.test/admin"), "htu mismatch", id="wrong-path"),
        pytest.param(proof(htu="https://evil.test/orders"), "htu mismatch", id="wrong-host"),
        pytest.param(proof(ath="AAAA"), "ath mismatch", id="wrong-ath"),
        pytest.param(proof(ath=None), "ath mismatch", id="missing-ath"),
        pytest.param(proof(iat=NOW - 61), "not fresh", id="too-old"),
        pytest.param(proof(iat=NOW + 6), "not fresh", id="from-the-future"),
        pytest.param(proof(iat=None), "iat missing", id="no-iat"),
        pytest.param(proof(jti=None), "jti missing", id="no-jti"),
        pytest.param("garbage", "malformed", id="garbage"),
    ],
)
def test_verify_proof(token: str, error: str | None) -> None:
    if error is None:
        check(token)
    else:
        with pytest.raises(TokenError, match=error):
            check(token)


def test_replayed_proof_refused_until_it_could_no_longer_be_fresh() -> None:
    clock = [NOW]
    replay = ReplayCache(max_entries=10, clock=lambda: clock[0])
    token = proof()
    check(token, replay=replay)
    with pytest.raises(TokenError, match="replayed"):
        check(token, replay=replay)
    check(proof(jti="j2"), replay=replay)
    clock[0] += 66  # past max_age + leeway: the jti is forgotten (iat freshness guards it now)
    assert replay.check_and_add("j1", ttl=65)


def test_replay_cache_is_bounded() -> None:
    replay = ReplayCache(max_entries=3, clock=lambda: NOW)
    for i in range(10):
        assert replay.check_and_add(f"j{i}", ttl=60)
    assert len(replay) == 3


def test_thumbprint_matches_rfc7638_example() -> None:
    """The RSA example of RFC 7638 section 3.1."""
    rfc_key = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
        "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
        "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
        "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(rfc_key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        pytest.param("https://A.test/x?q=1#f", "https://a.test/x", id="query-fragment-dropped"),
        pytest.param("http://a.test:80/x", "http://a.test/x", id="default-port-dropped"),
        pytest.param("http://a.test:8080/x", "http://a.test:8080/x", id="other-port-kept"),
        pytest.param("https://a.test", "https://a.test/", id="empty-path-is-root"),
        pytest.param("http://[::1]:9/x", "http://[::1]:9/x", id="ipv6"),
    ],
)
def test_normalize_htu(url: str, normal: str) -> None:
    assert normalize_htu(url) == normal
