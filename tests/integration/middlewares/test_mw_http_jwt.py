"""JWT and DPoP over real HTTP, with the JWKS served by a real identity-provider stand-in.

Both servers listen on 127.0.0.1: the IdP app serves a JWKS document the test can rotate and
counts fetches; the gateway side runs ``build_chain`` around a handler echoing the claims.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import jwt as pyjwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hexagon_gateway.middlewares import RouteMiddleware, build_chain, snapshot
from hexagon_gateway.middlewares.dpop_core import jwk_thumbprint
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ISSUER = "https://idp.test"
KEY_A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_B = ec.generate_private_key(ec.SECP256R1())
CLIENT_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        data = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**data, "kid": kid, "use": "sig"}


def token(key: Any = KEY_A, kid: str = "a", alg: str = "RS256", **overrides: Any) -> str:
    now = time.time()
    claims: dict[str, Any] = {"iss": ISSUER, "aud": "api", "sub": "alice", "exp": now + 300}
    claims.update(overrides)
    return pyjwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


class Idp:
    def __init__(self) -> None:
        self.keys = [public_jwk(KEY_A, "a")]
        self.fetches = 0

    async def jwks(self, request: web.Request) -> web.StreamResponse:
        self.fetches += 1
        return web.json_response({"keys": self.keys})


@asynccontextmanager
async def listen(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def idp_server(idp: Idp) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/jwks.json", idp.jwks)
    async with listen(app) as base:
        yield base + "/jwks.json"


async def claims_echo(request: web.Request) -> web.StreamResponse:
    return web.json_response({"claims": request.get("hexagon.jwt_claims")})


@asynccontextmanager
async def gateway(chain: Sequence[RouteMiddleware]) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.StreamResponse:
        handler: Handler = claims_echo
        for middleware in reversed(chain):
            handler = (lambda mw, inner: lambda req: mw(req, inner))(middleware, handler)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with listen(app) as base:
        yield base


async def call(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers or {}) as response,
    ):
        return response.status, CIMultiDict(response.headers), await response.json()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def jwt_chain(jwks_url: str, **extra: Any) -> list[RouteMiddleware]:
    spec = {
        "type": "jwt",
        "issuer": ISSUER,
        "audiences": ["api"],
        "algorithms": ["RS256", "ES256"],
        "jwksUrl": jwks_url,
        **extra,
    }
    return build_chain([spec], route_name="api")


async def test_valid_token_passes_with_claims_and_keys_are_cached() -> None:
    idp = Idp()
    async with idp_server(idp) as jwks_url, gateway(jwt_chain(jwks_url)) as base:
        for _ in range(3):
            status, _, body = await call(base + "/orders", headers=bearer(token()))
            assert status == 200
            assert body["claims"]["sub"] == "alice"
    assert idp.fetches == 1


async def test_rejections_are_401_with_bearer_challenge_and_json() -> None:
    idp = Idp()
    async with idp_server(idp) as jwks_url:
        chain = jwt_chain(jwks_url)
        async with gateway(chain) as base:
            await check_rejections(base)
    assert snapshot(chain)["jwt_rejected_total"] == 6
    assert snapshot(chain)["jwt_accepted_total"] == 0


async def check_rejections(base: str) -> None:
    status, headers, body = await call(base)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="hexagon"'
    assert body["error"] == "unauthorized"
    cases = {
        "token expired": token(exp=time.time() - 3600),
        "invalid issuer": token(iss="https://evil.test"),
        "invalid audience": token(aud="other"),
        "signature verification failed": token()[:-4] + "AAAA",
        "algorithm not allowed": pyjwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256"),
    }
    for description, value in cases.items():
        status, headers, body = await call(base, headers=bearer(value))
        assert status == 401, description
        assert headers["WWW-Authenticate"] == (
            f'Bearer error="invalid_token", error_description="{description}"'
        )
        assert body == {"error": "invalid_token", "error_description": description}


async def test_rotated_key_is_fetched_on_unknown_kid_and_refetches_are_rate_limited() -> None:
    idp = Idp()
    async with idp_server(idp) as jwks_url:
        chain = jwt_chain(jwks_url, jwksMinRefreshSeconds=0)
        async with gateway(chain) as base:
            assert (await call(base, headers=bearer(token())))[0] == 200
            idp.keys.append(public_jwk(KEY_B, "b"))
            rotated = token(KEY_B, kid="b", alg="ES256")
            assert (await call(base, headers=bearer(rotated)))[0] == 200
            assert idp.fetches == 2
        limited = jwt_chain(jwks_url, jwksMinRefreshSeconds=3600)
        async with gateway(limited) as base:
            assert (await call(base, headers=bearer(token())))[0] == 200
            for i in range(5):
                status, _, body = await call(base, headers=bearer(token(kid=f"random-{i}")))
                assert (status, body["error_description"]) == (401, "unknown key id")
    assert idp.fetches == 3  # one for the second chain; random kids cost the IdP nothing


async def test_unreachable_jwks_with_nothing_cached_is_503() -> None:
    idp = Idp()
    async with idp_server(idp) as jwks_url:
        pass  # the IdP is gone: its port is closed now
    async with gateway(jwt_chain(jwks_url, jwksFetchTimeoutSeconds=2)) as base:
        status, _, body = await call(base, headers=bearer(token()))
    assert (status, body["error"]) == (503, "keys_unavailable")


async def test_secret_and_jwks_file_sources(tmp_path: Any) -> None:
    secret = "s" * 40
    chain = build_chain(
        [{"type": "jwt", "algorithms": ["HS256"], "secret": secret, "issuer": ISSUER}],
        route_name="api",
    )
    good = pyjwt.encode({"iss": ISSUER, "exp": time.time() + 60}, secret, algorithm="HS256")
    async with gateway(chain) as base:
        assert (await call(base, headers=bearer(good)))[0] == 200
        assert (await call(base, headers=bearer(token())))[0] == 401
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(KEY_B, "b")]}))
    chain = build_chain(
        [{"type": "jwt", "algorithms": ["ES256"], "jwksFile": str(path), "audiences": ["api"]}],
        route_name="api",
    )
    async with gateway(chain) as base:
        assert (await call(base, headers=bearer(token(KEY_B, kid="b", alg="ES256"))))[0] == 200
        assert (await call(base, headers=bearer(token())))[0] == 401


def dpop_proof(method: str, url: str, access: str, *, jti: str | None = None) -> str:
    ath = base64.urlsafe_b64encode(hashlib.sha256(access.encode()).digest()).rstrip(b"=")
    return pyjwt.encode(
        {
            "jti": jti or str(uuid.uuid4()),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
            "ath": ath.decode(),
        },
        CLIENT_KEY,
        algorithm="ES256",
        headers={
            "typ": "dpop+jwt",
            "jwk": ECAlgorithm.to_jwk(CLIENT_KEY.public_key(), as_dict=True),
        },
    )


async def test_dpop_bound_token_needs_a_fresh_proof_from_the_bound_key() -> None:
    idp = Idp()
    jkt = jwk_thumbprint(ECAlgorithm.to_jwk(CLIENT_KEY.public_key(), as_dict=True))
    access = token(cnf={"jkt": jkt})
    async with idp_server(idp) as jwks_url, gateway(jwt_chain(jwks_url, dpop=True)) as base:
        url = base + "/orders"
        proof = dpop_proof("POST", url, access)
        headers = {"Authorization": f"DPoP {access}", "DPoP": proof}
        status, _, body = await call(url + "?x=1", method="POST", headers=headers)
        assert (status, body["claims"]["sub"]) == (200, "alice")
        status, response_headers, body = await call(url, method="POST", headers=headers)
        assert (status, body["error_description"]) == (401, "DPoP proof replayed")
        assert response_headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')
        wrong_method = {"Authorization": f"DPoP {access}", "DPoP": dpop_proof("GET", url, access)}
        status, _, body = await call(url, method="POST", headers=wrong_method)
        assert (status, body["error_description"]) == (401, "DPoP htm mismatch")
        status, _, body = await call(
            url, method="POST", headers={"Authorization": f"DPoP {access}"}
        )
        assert (status, body["error_description"]) == (
            401,
            "exactly one DPoP proof header required",
        )
        unbound = token()
        headers = {"Authorization": f"DPoP {unbound}", "DPoP": dpop_proof("POST", url, unbound)}
        status, _, body = await call(url, method="POST", headers=headers)
        assert (status, body["error_description"]) == (401, "token is not DPoP-bound")
        status, _, _ = await call(url, method="POST", headers=bearer(access))
        assert status == 401
