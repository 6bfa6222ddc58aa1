"""JWT verification policy: keys, algorithms and claims, free of any HTTP framework.

PyJWT verifies signatures; everything that decides *which* key and algorithm may be used, and
whether the claims are acceptable, lives here with an injectable wall clock so the accept/reject
table is tested exactly. Algorithm confusion is closed off three ways: the token's ``alg`` must
be in the configured list; symmetric algorithms are only ever paired with a configured secret
and asymmetric ones only with JWKS keys (``oct`` keys in a JWKS are ignored); and a JWK is only
used with algorithms matching its key type, curve and declared ``alg``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from jwt import PyJWK, PyJWS
from jwt.exceptions import InvalidTokenError, PyJWKError

ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
SYMMETRIC_ALGORITHMS = ("HS256", "HS384", "HS512")
# Which (kty, crv) a JWK must have to be used with an algorithm.
_KEY_SHAPE: dict[str, tuple[str, frozenset[str | None]]] = {
    **{alg: ("RSA", frozenset({None})) for alg in ASYMMETRIC_ALGORITHMS if alg[0] in "RP"},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
# Token type headers that must never be accepted as access tokens (a DPoP proof, notably).
_FORBIDDEN_TYP = frozenset({"dpop+jwt"})
# One stateless instance: building a PyJWS per call re-reads the algorithm registry.
JWS = PyJWS()


class TokenError(Exception):
    """The token is unacceptable; ``str(error)`` is a short client-safe description."""


class KeysUnavailable(Exception):
    """No signing keys could be obtained (JWKS endpoint down and nothing cached)."""


class KeySet:
    """The usable signing keys of one JWKS document, indexed by ``kid``."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise ValueError("a JWKS object with a 'keys' array")
        self._jwks: list[dict[str, Any]] = [
            k for k in keys if isinstance(k, dict) and _usable_for_signatures(k)
        ]
        self._cache: dict[tuple[int, str], PyJWK | None] = {}

    @classmethod
    def from_bytes(cls, data: bytes) -> KeySet:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"a JSON JWKS document ({exc})") from exc
        if not isinstance(doc, dict):
            raise ValueError("a JWKS object with a 'keys' array")
        return cls(doc)

    def __len__(self) -> int:
        return len(self._jwks)

    def has_kid(self, kid: str) -> bool:
        return any(k.get("kid") == kid for k in self._jwks)

    def candidates(self, *, alg: str, kid: str | None) -> list[PyJWK]:
        """Keys that may verify a token with this ``alg`` and ``kid`` (parsed once, memoised)."""
        found = []
        for index, jwk in enumerate(self._jwks):
            if kid is not None and jwk.get("kid") != kid:
                continue
            memo_key = (index, alg)
            if memo_key not in self._cache:
                self._cache[memo_key] = bind_key(jwk, alg)
            key = self._cache[memo_key]
            if key is not None:
                found.append(key)
        return found


def _usable_for_signatures(jwk: Mapping[str, Any]) -> bool:
    # Symmetric keys in a (often public) JWKS are how HS/RS confusion attacks start: never use.
    return jwk.get("kty") in ("RSA", "EC", "OKP") and jwk.get("use", "sig") == "sig"


def bind_key(jwk: Mapping[str, Any], alg: str) -> PyJWK | None:
    shape = _KEY_SHAPE.get(alg)
    if shape is None or jwk.get("kty") != shape[0] or jwk.get("crv") not in shape[1]:
        return None
    if jwk.get("alg") not in (None, alg):
        return None
    try:
        return PyJWK(dict(jwk), algorithm=alg)
    except (PyJWKError, ValueError, TypeError):
        return None


class JwksFetcher(Protocol):
    def __call__(self) -> Awaitable[bytes]: ...


class JwksCache:
    """JWKS from a URL: cached for ``ttl`` seconds, refetched early on an unknown ``kid``.

    Refetches for unknown kids are rate limited (``min_refresh`` seconds apart) because the kid
    comes from an unauthenticated token: without the limit, random kids would turn the gateway
    into an amplifier against the identity provider. A failed fetch keeps serving stale keys.
    """

    def __init__(
        self, *, fetch: JwksFetcher, ttl: float, min_refresh: float, clock: Callable[[], float]
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._inflight: asyncio.Task[None] | None = None
        self.fetches_total = 0
        self.fetch_failures_total = 0

    async def get(self) -> KeySet:
        if self._keys is None or self._clock() - self._fetched_at >= self._ttl:
            await self._refresh(forced=False)
        if self._keys is None:
            raise KeysUnavailable("signing keys unavailable")
        return self._keys

    async def refresh_for_unknown_kid(self) -> KeySet:
        await self._refresh(forced=True)
        if self._keys is None:
            raise KeysUnavailable("signing keys unavailable")
        return self._keys

    async def _refresh(self, *, forced: bool) -> None:
        now = self._clock()
        # Both a forced refetch and a retry after failure wait out min_refresh.
        if (forced or self._keys is None) and now - self._attempted_at < self._min_refresh:
            return
        # Single flight: concurrent requests share one fetch. shield() keeps a cancelled
        # client request from cancelling the fetch the others are waiting on.
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._do_refresh())
        await asyncio.shield(self._inflight)

    async def _do_refresh(self) -> None:
        self._attempted_at = self._clock()
        self.fetches_total += 1
        try:
            keys = KeySet.from_bytes(await self._fetch())
        except Exception:
            self.fetch_failures_total += 1
            return
        self._keys = keys
        self._fetched_at = self._clock()


@dataclass(frozen=True, slots=True)
class Policy:
    algorithms: tuple[str, ...]
    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    leeway: float = 30.0
    required_claims: tuple[str, ...] = ("exp",)


def split_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header, with the checks that need no key."""
    try:
        header = JWS.get_unverified_header(token)
    except InvalidTokenError as exc:
        raise TokenError("malformed token") from exc
    if str(header.get("typ", "")).lower() in _FORBIDDEN_TYP:
        raise TokenError("token type not accepted")
    return header


def verify_signature(token: str, *, keys: Sequence[PyJWK | bytes], alg: str) -> dict[str, Any]:
    """Payload of ``token`` if any key verifies it with ``alg``; TokenError otherwise."""
    for key in keys:
        try:
            decoded = JWS.decode_complete(token, key=key, algorithms=[alg])
        except InvalidTokenError:
            continue
        try:
            payload = json.loads(decoded["payload"])
        except ValueError as exc:
            raise TokenError("malformed claims") from exc
        if not isinstance(payload, dict):
            raise TokenError("malformed claims")
        return payload
    raise TokenError("signature verification failed")


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError(f"claim {name} is not a number")
    return float(value)


def check_claims(claims: Mapping[str, Any], *, policy: Policy, now: float) -> None:
    """Registered-claim checks (RFC 7519 section 4.1) with ``policy.leeway`` seconds of skew."""
    for name in policy.required_claims:
        if name not in claims:
            raise TokenError(f"missing required claim {name}")
    exp = _numeric(claims, "exp")
    if exp is not None and now >= exp + policy.leeway:
        raise TokenError("token expired")
    nbf = _numeric(claims, "nbf")
    if nbf is not None and now + policy.leeway < nbf:
        raise TokenError("token not yet valid")
    iat = _numeric(claims, "iat")
    if iat is not None and now + policy.leeway < iat:
        raise TokenError("token issued in the future")
    if policy.issuer is not None and claims.get("iss") != policy.issuer:
        raise TokenError("invalid issuer")
    if policy.audiences:
        aud = claims.get("aud")
        values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(isinstance(v, str) and v in policy.audiences for v in values):
            raise TokenError("invalid audience")


class KeySource(Protocol):
    """Where the verifier's keys come from: a secret, a JWKS file or a cached JWKS URL."""

    async def candidates(self, *, alg: str, kid: str | None) -> list[PyJWK | bytes]: ...


@dataclass(frozen=True, slots=True)
class SecretKeys:
    secret: bytes

    async def candidates(self, *, alg: str, kid: str | None) -> list[PyJWK | bytes]:
        return [self.secret] if alg in SYMMETRIC_ALGORITHMS else []


@dataclass(frozen=True, slots=True)
class StaticJwks:
    keys: KeySet

    async def candidates(self, *, alg: str, kid: str | None) -> list[PyJWK | bytes]:
        if alg not in _KEY_SHAPE:
            return []
        return list(self.keys.candidates(alg=alg, kid=kid))


@dataclass(frozen=True, slots=True)
class RemoteJwks:
    cache: JwksCache

    async def candidates(self, *, alg: str, kid: str | None) -> list[PyJWK | bytes]:
        if alg not in _KEY_SHAPE:
            return []
        keys = await self.cache.get()
        if kid is not None and not keys.has_kid(kid):
            # Key rotation: the issuer may have published a key we have not seen yet.
            keys = await self.cache.refresh_for_unknown_kid()
        return list(keys.candidates(alg=alg, kid=kid))


class VerifiedCache:
    """Tokens whose signature was verified recently, so a client reusing its token (the common
    case) does not pay for a signature check on every request.

    Keyed by the whole token, signature included, so a hit proves the same bytes were verified
    before; time-based claims are still checked on every hit. Entries live ``ttl`` seconds
    (bounding how long a key removed from the JWKS keeps validating old tokens) and the table
    holds at most ``max_entries`` (oldest evicted).
    """

    def __init__(self, *, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, dict[str, Any], dict[str, Any]]] = (
            OrderedDict()
        )
        self.hits_total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._entries[token]
            return None
        self.hits_total += 1
        return entry[1], entry[2]

    def put(self, token: str, header: dict[str, Any], claims: dict[str, Any]) -> None:
        self._entries[token] = (self._clock() + self._ttl, header, claims)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)


async def verify_token(
    token: str,
    *,
    policy: Policy,
    keys: KeySource,
    now: float,
    cache: VerifiedCache | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of an acceptable token; TokenError / KeysUnavailable otherwise."""
    if cache is not None:
        hit = cache.get(token)
        if hit is not None:
            check_claims(hit[1], policy=policy, now=now)
            return hit
    header = split_header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in policy.algorithms:
        raise TokenError("algorithm not allowed")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenError("malformed key id")
    candidates = await keys.candidates(alg=alg, kid=kid)
    if not candidates:
        raise TokenError("unknown key id" if kid is not None else "no key for algorithm")
    claims = verify_signature(token, keys=candidates, alg=alg)
    check_claims(claims, policy=policy, now=now)
    if cache is not None:
        cache.put(token, header, claims)
    return header, claims
