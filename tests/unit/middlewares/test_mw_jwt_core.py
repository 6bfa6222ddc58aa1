"""JWT accept/reject table with keys generated here, and the JWKS cache on a fake clock."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hexagon_gateway.middlewares.jwt_core import (
    JwksCache,
    KeySet,
    KeysUnavailable,
    Policy,
    SecretKeys,
    StaticJwks,
    TokenError,
    VerifiedCache,
    verify_token,
)
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

NOW = 1_700_000_000.0
ISSUER = "https://issuer.test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
SECRET = b"s" * 32
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def jwk(public: Any, kid: str, **extra: Any) -> dict[str, Any]:
    to_jwk: Callable[..., Any]
    if isinstance(public, rsa.RSAPublicKey):
        to_jwk = RSAAlgorithm.to_jwk
    elif isinstance(public, ec.EllipticCurvePublicKey):
        to_jwk = ECAlgorithm.to_jwk
    else:
        to_jwk = OKPAlgorithm.to_jwk
    data: dict[str, Any] = to_jwk(public, as_dict=True)
    return {**data, "kid": kid, "use": "sig", **extra}


JWKS = {
    "keys": [
        jwk(RSA_KEY.public_key(), "rsa1"),
        jwk(EC_KEY.public_key(), "ec1"),
        jwk(ED_KEY.public_key(), "ed1"),
        {"kty": "oct", "kid": "hmac", "k": base64.urlsafe_b64encode(SECRET).decode()},
    ]
}
POLICY = Policy(algorithms=("RS256", "ES256", "EdDSA"), issuer=ISSUER, audiences=("api",))


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "aud": "api", "sub": "u1", "exp": NOW + 60}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", **header: Any) -> str:
    headers = {"kid": "rsa1", **header} if "kid" not in header else dict(header)
    headers = {k: v for k, v in headers.items() if v is not None}
    return pyjwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """Tokens PyJWT refuses to make: alg none, HMAC keyed with a public key PEM."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def tamper_signature(token: str) -> str:
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[0] ^= 1
    return f"{head}.{body}.{b64(bytes(raw))}"


def tamper_payload(token: str) -> str:
    head, _, sig = token.split(".")
    return f"{head}.{b64(json.dumps(claims(sub='admin')).encode())}.{sig}"


GOOD = sign(claims())

CASES = [
    pytest.param(GOOD, None, id="rs256-valid"),
    pytest.param(sign(claims(), EC_KEY, "ES256", kid="ec1"), None, id="es256-valid"),
    pytest.param(sign(claims(), ED_KEY, "EdDSA", kid="ed1"), None, id="eddsa-valid"),
    pytest.param(sign(claims(), kid=None), None, id="no-kid-single-compatible-key"),
    pytest.param(sign(claims(aud=["other", "api"])), None, id="aud-list-contains-api"),
    pytest.param(sign(claims(exp=NOW - 29)), None, id="expired-within-leeway"),
    pytest.param(sign(claims(nbf=NOW + 29)), None, id="nbf-within-leeway"),
    pytest.param(sign(claims(exp=NOW - 31)), "token expired", id="expired"),
    pytest.param(sign(claims(exp=NOW - 30)), "token expired", id="expired-at-leeway-edge"),
    pytest.param(sign(claims(nbf=NOW + 31)), "token not yet valid", id="not-yet-valid"),
    pytest.param(sign(claims(iat=NOW + 300)), "token issued in the future", id="iat-future"),
    pytest.param(sign(claims(exp=None)), "missing required claim exp", id="no-exp"),
    pytest.param(sign(claims(exp="tomorrow")), "claim exp is not a number", id="exp-string"),
    pytest.param(sign(claims(exp=True)), "claim exp is not a number", id="exp-bool"),
    pytest.param(sign(claims(iss="https://evil")), "invalid issuer", id="wrong-issuer"),
    pytest.param(sign(claims(iss=None)), "invalid issuer", id="missing-issuer"),
    pytest.param(sign(claims(aud="other")), "invalid audience", id="wrong-audience"),
    pytest.param(sign(claims(aud=None)), "invalid audience", id="missing-audience"),
    pytest.param(sign(claims(aud=[1, 2])), "invalid audience", id="audience-not-strings"),
    pytest.param(
        handmade({"alg": "none", "typ": "JWT", "kid": "rsa1"}, claims(), None),
        "algorithm not allowed",
        id="alg-none",
    ),
    pytest.param(
        handmade({"alg": "None", "kid": "rsa1"}, claims(), None),
        "algorithm not allowed",
        id="alg-None-capitalised",
    ),
    pytest.param(
        handmade({"alg": "HS256", "kid": "rsa1"}, claims(), RSA_PUBLIC_PEM),
        "algorithm not allowed",
        id="hs256-signed-with-rsa-public-key",
    ),
    pytest.param(
        handmade({"alg": "HS256", "kid": "hmac"}, claims(), SECRET),
        "algorithm not allowed",
        id="hs256-with-jwks-oct-key",
    ),
    pytest.param(sign(claims(), alg="RS384"), "algorithm not allowed", id="alg-not-configured"),
    pytest.param(sign(claims(), kid="nope"), "unknown key id", id="unknown-kid"),
    pytest.param(sign(claims(), kid="ec1"), "unknown key id", id="kid-of-wrong-key-type"),
    pytest.param(tamper_signature(GOOD), "signature verification failed", id="tampered-sig"),
    pytest.param(tamper_payload(GOOD), "signature verification failed", id="tampered-claims"),
    pytest.param(sign(claims(), OTHER_RSA_KEY), "signature verification failed", id="other-key"),
    pytest.param(sign(claims(), typ="dpop+jwt"), "token type not accepted", id="dpop-proof-typ"),
    pytest.param("not.a.jwt", "malformed token", id="garbage"),
    pytest.param("", "malformed token", id="empty"),
    pytest.param(
        handmade({"alg": "HS256", "kid": 7}, claims(), SECRET), "malformed token", id="kid-int"
    ),
]


@pytest.mark.parametrize(("token", "error"), CASES)
async def test_verify_with_jwks(token: str, error: str | None) -> None:
    keys = StaticJwks(KeySet(JWKS))
    if error is None:
        _, verified = await verify_token(token, policy=POLICY, keys=keys, now=NOW)
        assert verified["sub"] == "u1"
    else:
        with pytest.raises(TokenError) as info:
            await verify_token(token, policy=POLICY, keys=keys, now=NOW)
        assert str(info.value) == error


async def test_oct_keys_in_a_jwks_are_never_used_even_if_hs256_is_allowed() -> None:
    """Defence in depth behind the config check: HS256 allowed, and the JWKS has an oct key."""
    policy = Policy(algorithms=("HS256", "RS256"), issuer=ISSUER, audiences=("api",))
    token = pyjwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "hmac"})
    with pytest.raises(TokenError, match="unknown key id"):
        await verify_token(token, policy=policy, keys=StaticJwks(KeySet(JWKS)), now=NOW)


async def test_jwk_declared_alg_is_binding() -> None:
    keyset = KeySet({"keys": [jwk(RSA_KEY.public_key(), "rsa1", alg="RS256")]})
    policy = Policy(algorithms=("RS256", "PS256"))
    token = sign(claims(), alg="PS256")
    with pytest.raises(TokenError, match="unknown key id"):
        await verify_token(token, policy=policy, keys=StaticJwks(keyset), now=NOW)
    accepted = sign(claims(), alg="RS256")
    await verify_token(accepted, policy=policy, keys=StaticJwks(keyset), now=NOW)


SECRET_CASES = [
    pytest.param(pyjwt.encode(claims(), SECRET, algorithm="HS256"), None, id="hs256-valid"),
    pytest.param(
        pyjwt.encode(claims(), b"t" * 32, algorithm="HS256"),
        "signature verification failed",
        id="hs256-wrong-secret",
    ),
    pytest.param(GOOD, "algorithm not allowed", id="rs256-under-secret-policy"),
    pytest.param(
        handmade({"alg": "none"}, claims(), None), "algorithm not allowed", id="alg-none-secret"
    ),
]


@pytest.mark.parametrize(("token", "error"), SECRET_CASES)
async def test_verify_with_secret(token: str, error: str | None) -> None:
    policy = Policy(algorithms=("HS256",), issuer=ISSUER, audiences=("api",))
    keys = SecretKeys(SECRET)
    if error is None:
        await verify_token(token, policy=policy, keys=keys, now=NOW)
    else:
        with pytest.raises(TokenError, match=error):
            await verify_token(token, policy=policy, keys=keys, now=NOW)


@pytest.mark.parametrize(
    ("document", "usable"),
    [
        pytest.param(b'{"keys": []}', 0, id="empty"),
        pytest.param(json.dumps(JWKS).encode(), 3, id="oct-key-dropped"),
        pytest.param(
            json.dumps({"keys": [jwk(RSA_KEY.public_key(), "e", use="enc")]}).encode(),
            0,
            id="encryption-key-dropped",
        ),
    ],
)
def test_keyset_keeps_only_signature_keys(document: bytes, usable: int) -> None:
    assert len(KeySet.from_bytes(document)) == usable


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"keys": {}}', id="keys-not-array"),
    ],
)
def test_keyset_refuses_malformed_documents(document: bytes) -> None:
    with pytest.raises(ValueError):
        KeySet.from_bytes(document)


class FakeIdp:
    """A scripted JWKS endpoint for the cache: each fetch returns the next document or raises."""

    def __init__(self, *documents: bytes | Exception) -> None:
        self.documents = list(documents)
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> bytes:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        item = self.documents[min(self.calls, len(self.documents)) - 1]
        if isinstance(item, Exception):
            raise item
        return item


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


ONE = json.dumps({"keys": [jwk(RSA_KEY.public_key(), "rsa1")]}).encode()
TWO = json.dumps(JWKS).encode()


async def test_cache_serves_within_ttl_and_refetches_after() -> None:
    idp, clock = FakeIdp(ONE, TWO), Clock()
    cache = JwksCache(fetch=idp, ttl=300, min_refresh=30, clock=clock)
    assert len(await cache.get()) == 1
    clock.now += 299
    assert len(await cache.get()) == 1
    assert idp.calls == 1
    clock.now += 1
    assert len(await cache.get()) == 3
    assert idp.calls == 2


async def test_unknown_kid_refetch_is_rate_limited() -> None:
    idp, clock = FakeIdp(ONE, TWO, TWO), Clock()
    cache = JwksCache(fetch=idp, ttl=300, min_refresh=30, clock=clock)
    await cache.get()
    clock.now += 10
    await cache.refresh_for_unknown_kid()  # within min_refresh of the first fetch: skipped
    assert idp.calls == 1
    clock.now += 20
    assert len(await cache.refresh_for_unknown_kid()) == 3
    assert idp.calls == 2
    await cache.refresh_for_unknown_kid()
    assert idp.calls == 2


async def test_rotated_key_is_found_through_refetch() -> None:
    idp, clock = FakeIdp(ONE, TWO), Clock()
    from hexagon_gateway.middlewares.jwt_core import RemoteJwks

    cache = JwksCache(fetch=idp, ttl=300, min_refresh=0, clock=clock)
    token = sign(claims(), EC_KEY, "ES256", kid="ec1")
    await verify_token(token, policy=POLICY, keys=RemoteJwks(cache), now=NOW)
    assert idp.calls == 2


async def test_failed_fetch_serves_stale_keys() -> None:
    idp, clock = FakeIdp(ONE, OSError("down")), Clock()
    cache = JwksCache(fetch=idp, ttl=60, min_refresh=30, clock=clock)
    await cache.get()
    clock.now += 61
    assert len(await cache.get()) == 1
    assert cache.fetch_failures_total == 1


async def test_nothing_cached_and_endpoint_down_is_unavailable_and_backs_off() -> None:
    idp, clock = FakeIdp(OSError("down"), ONE), Clock()
    cache = JwksCache(fetch=idp, ttl=60, min_refresh=30, clock=clock)
    with pytest.raises(KeysUnavailable):
        await cache.get()
    with pytest.raises(KeysUnavailable):
        await cache.get()  # no hammering: still within min_refresh
    assert idp.calls == 1
    clock.now += 30
    assert len(await cache.get()) == 1


async def test_concurrent_misses_share_one_fetch() -> None:
    idp, clock = FakeIdp(ONE), Clock()
    idp.gate = asyncio.Event()
    cache = JwksCache(fetch=idp, ttl=60, min_refresh=30, clock=clock)
    waiters = [asyncio.ensure_future(cache.get()) for _ in range(5)]
    await asyncio.sleep(0)
    idp.gate.set()
    results = await asyncio.gather(*waiters)
    assert idp.calls == 1
    assert all(len(keys) == 1 for keys in results)


class CountingKeys:
    def __init__(self) -> None:
        self.inner = StaticJwks(KeySet(JWKS))
        self.calls = 0

    async def candidates(self, *, alg: str, kid: str | None) -> list[Any]:
        self.calls += 1
        return await self.inner.candidates(alg=alg, kid=kid)


async def test_verified_cache_skips_signature_but_not_time_checks() -> None:
    clock, keys = Clock(), CountingKeys()
    cache = VerifiedCache(ttl=60, max_entries=10, clock=clock)
    short = sign(claims(exp=NOW + 100))
    for _ in range(3):
        await verify_token(short, policy=POLICY, keys=keys, now=NOW, cache=cache)
    assert (keys.calls, cache.hits_total) == (1, 2)
    with pytest.raises(TokenError, match="token expired"):
        await verify_token(short, policy=POLICY, keys=keys, now=NOW + 200, cache=cache)
    clock.now += 60  # entry outlived its ttl: verified again from scratch
    await verify_token(short, policy=POLICY, keys=keys, now=NOW, cache=cache)
    assert keys.calls == 2


async def test_verified_cache_holds_only_accepted_tokens_and_is_bounded() -> None:
    cache = VerifiedCache(ttl=60, max_entries=2, clock=Clock())
    keys = StaticJwks(KeySet(JWKS))
    with pytest.raises(TokenError):
        await verify_token(tamper_signature(GOOD), policy=POLICY, keys=keys, now=NOW, cache=cache)
    assert len(cache) == 0
    for sub in ("a", "b", "c"):
        await verify_token(sign(claims(sub=sub)), policy=POLICY, keys=keys, now=NOW, cache=cache)
    assert len(cache) == 2
