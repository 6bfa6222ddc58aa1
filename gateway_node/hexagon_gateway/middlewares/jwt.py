"""JWT bearer authentication, optionally DPoP-bound (aiohttp adapter over ``jwt_core``).

Keys come from exactly one source: a JWKS file read when the chain is built, a JWKS URL fetched
on demand and cached (``JwksCache``), or an HMAC secret (inline or from a file). Failures answer
401 with an RFC 6750 ``WWW-Authenticate`` challenge and a JSON body; a JWKS endpoint that cannot
be reached while nothing is cached answers 503, because the client is not at fault. Verified
claims are stored in ``request["hexagon.jwt_claims"]`` for later middlewares and the proxy.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

from ._http import json_error
from .dpop_core import ProofError, ProofPolicy, ReplayCache, verify_proof
from .jwt_core import (
    ASYMMETRIC_ALGORITHMS,
    SYMMETRIC_ALGORITHMS,
    JwksCache,
    KeySet,
    KeySource,
    KeysUnavailable,
    Policy,
    RemoteJwks,
    SecretKeys,
    StaticJwks,
    TokenError,
    VerifiedCache,
    verify_token,
)
from .schemas import OptionError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLAIMS_KEY = "hexagon.jwt_claims"
_MAX_JWKS_BYTES = 1 << 20


def _read(field: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OptionError(field, path, f"a readable file ({exc.strerror})") from exc


def _url_fetcher(url: str, *, timeout: float) -> Callable[[], Awaitable[bytes]]:
    async def fetch() -> bytes:
        # A session per fetch: fetches are rare (TTL-bound, rate limited) and this keeps the
        # middleware free of a session whose lifetime would have to follow config reloads.
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.get(url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = await response.content.read(_MAX_JWKS_BYTES + 1)
            if len(body) > _MAX_JWKS_BYTES:
                raise ValueError("JWKS document too large")
            return body

    return fetch


class JwtAuth:
    kind = "jwt"

    def __init__(
        self,
        *,
        algorithms: Sequence[str],
        issuer: str | None = None,
        audiences: Sequence[str] = (),
        jwks_file: str | None = None,
        jwks_url: str | None = None,
        secret: str | None = None,
        secret_file: str | None = None,
        leeway_seconds: float = 30.0,
        jwks_cache_seconds: float = 300.0,
        jwks_min_refresh_seconds: float = 30.0,
        jwks_fetch_timeout_seconds: float = 5.0,
        dpop: bool = False,
        dpop_max_age_seconds: float = 60.0,
        route_name: str = "",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        sources = {
            "jwksFile": jwks_file,
            "jwksUrl": jwks_url,
            "secret": secret,
            "secretFile": secret_file,
        }
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            raise OptionError(
                "jwksFile", given or None, "exactly one of jwksFile, jwksUrl, secret, secretFile"
            )
        symmetric = secret is not None or secret_file is not None
        allowed = SYMMETRIC_ALGORITHMS if symmetric else ASYMMETRIC_ALGORITHMS
        for index, alg in enumerate(algorithms):
            if alg not in allowed:
                # Refusing the mix at config time is what rules out HS/RS key confusion.
                raise OptionError(
                    f"algorithms[{index}]", alg, f"one of {list(allowed)} with {given[0]}"
                )
        self.keys: KeySource
        self.jwks_cache: JwksCache | None = None
        if jwks_file is not None:
            document = _read("jwksFile", jwks_file)
            try:
                keyset = KeySet.from_bytes(document)
            except ValueError as exc:
                raise OptionError("jwksFile", jwks_file, str(exc)) from exc
            if not keyset:
                raise OptionError("jwksFile", jwks_file, "at least one RSA, EC or OKP signing key")
            self.keys = StaticJwks(keyset)
        elif jwks_url is not None:
            if not jwks_url.startswith(("http://", "https://")):
                raise OptionError("jwksUrl", jwks_url, "an http(s) URL")
            self.jwks_cache = JwksCache(
                fetch=_url_fetcher(jwks_url, timeout=jwks_fetch_timeout_seconds),
                ttl=jwks_cache_seconds,
                min_refresh=jwks_min_refresh_seconds,
                clock=clock,
            )
            self.keys = RemoteJwks(self.jwks_cache)
        else:
            raw = secret.encode() if secret is not None else _read("secretFile", str(secret_file))
            raw = raw.rstrip(b"\r\n") if secret is None else raw
            if len(raw) < 32:
                # RFC 7518 section 3.2: an HS256 key must be at least as long as the hash.
                shown = secret if secret is not None else secret_file  # "secret" is redacted
                raise OptionError(given[0], shown, "a secret of at least 32 bytes")
            self.keys = SecretKeys(raw)
        self.policy = Policy(
            algorithms=tuple(algorithms),
            issuer=issuer,
            audiences=tuple(audiences),
            leeway=float(leeway_seconds),
        )
        self.dpop = dpop
        self._proof_policy = ProofPolicy(max_age=float(dpop_max_age_seconds))
        self._replay = ReplayCache(max_entries=100_000, clock=clock)
        self._wall_clock = wall_clock
        self.verified = VerifiedCache(
            ttl=min(60.0, jwks_cache_seconds), max_entries=10_000, clock=clock
        )
        self._route = route_name
        self.accepted_total = 0
        self.rejected_total = 0

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        expected_scheme = "dpop" if self.dpop else "bearer"
        if scheme.lower() != expected_scheme or not token:
            self.rejected_total += 1
            return self._challenge(None, f"missing {expected_scheme} token")
        now = self._wall_clock()
        try:
            _, claims = await verify_token(
                token, policy=self.policy, keys=self.keys, now=now, cache=self.verified
            )
            if self.dpop:
                self._check_dpop(request, token=token, claims=claims, now=now)
        except TokenError as exc:
            self.rejected_total += 1
            # RFC 9449 section 7.1 tells a bad proof apart from a bad token.
            code = "invalid_dpop_proof" if isinstance(exc, ProofError) else "invalid_token"
            return self._challenge(code, str(exc))
        except KeysUnavailable:
            self.rejected_total += 1
            return json_error(
                503,
                {"error": "keys_unavailable", "error_description": "signing keys unavailable"},
                headers={"Retry-After": "5"},
            )
        self.accepted_total += 1
        request[CLAIMS_KEY] = claims
        return await handler(request)

    def _check_dpop(
        self, request: web.Request, *, token: str, claims: dict[str, object], now: float
    ) -> None:
        proofs = request.headers.getall("DPoP", [])
        if len(proofs) != 1:
            raise ProofError("exactly one DPoP proof header required")
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if not isinstance(jkt, str):
            raise TokenError("token is not DPoP-bound")
        verify_proof(
            proofs[0],
            method=request.method,
            url=str(request.url),
            access_token=token,
            jkt=jkt,
            policy=self._proof_policy,
            replay=self._replay,
            now=now,
        )

    def _challenge(self, error: str | None, description: str) -> web.Response:
        scheme = "DPoP" if self.dpop else "Bearer"
        if error is None:
            # RFC 6750 section 3.1: no error code when the request carried no credentials.
            challenge = f'{scheme} realm="hexagon"'
            body = {"error": "unauthorized", "error_description": description}
        else:
            challenge = f'{scheme} error="{error}", error_description="{description}"'
            body = {"error": error, "error_description": description}
        if self.dpop:
            challenge += f', algs="{" ".join(self._proof_policy.algorithms)}"'
        return json_error(401, body, headers={"WWW-Authenticate": challenge})

    def metrics(self) -> dict[str, float]:
        stats = {
            "jwt_accepted_total": float(self.accepted_total),
            "jwt_rejected_total": float(self.rejected_total),
            "jwt_cache_hits_total": float(self.verified.hits_total),
        }
        if self.jwks_cache is not None:
            stats["jwt_jwks_fetches_total"] = float(self.jwks_cache.fetches_total)
            stats["jwt_jwks_fetch_failures_total"] = float(self.jwks_cache.fetch_failures_total)
        return stats
