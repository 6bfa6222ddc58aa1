"""DPoP proof-of-possession checks (RFC 9449), free of any HTTP framework.

A DPoP-bound access token carries ``cnf.jkt``, the RFC 7638 thumbprint of a key the client
holds; every request then carries a fresh proof JWT signed by that key and naming the request's
method (``htm``) and URL (``htu``), the hash of the access token (``ath``) and a unique ``jti``.
A stolen token is useless without the key, and a captured proof cannot be replayed thanks to the
``iat`` freshness window and the ``jti`` cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jwt.exceptions import InvalidTokenError

from .jwt_core import ASYMMETRIC_ALGORITHMS, JWS, TokenError, bind_key

# RFC 7638 section 3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url without padding."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise ProofError("unsupported DPoP key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def normalize_htu(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, query and fragment removed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


class ProofError(TokenError):
    """The DPoP proof (not the access token) is unacceptable: ``invalid_dpop_proof``."""


class ReplayCache:
    """Seen ``jti`` values until their proof can no longer be fresh; bounded (oldest evicted)."""

    def __init__(self, *, max_entries: int, clock: Callable[[], float]) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, jti: str, *, ttl: float) -> bool:
        """True if ``jti`` is new (and remember it), False for a replay."""
        now = self._clock()
        while self._seen:
            oldest, expires = next(iter(self._seen.items()))
            if expires > now and len(self._seen) < self._max:
                break
            del self._seen[oldest]
        seen_until = self._seen.get(jti)
        if seen_until is not None and seen_until > now:
            return False
        self._seen[jti] = now + ttl
        return True


@dataclass(frozen=True, slots=True)
class ProofPolicy:
    algorithms: tuple[str, ...] = ("ES256", "RS256", "PS256", "EdDSA")
    max_age: float = 60.0
    leeway: float = 5.0


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str,
    jkt: str,
    policy: ProofPolicy,
    replay: ReplayCache,
    now: float,
) -> None:
    """Accept the proof for this request or raise ProofError saying why not."""
    try:
        header = JWS.get_unverified_header(proof)
    except InvalidTokenError as exc:
        raise ProofError("malformed DPoP proof") from exc
    if header.get("typ") != "dpop+jwt":
        raise ProofError("DPoP proof typ must be dpop+jwt")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in policy.algorithms or alg not in ASYMMETRIC_ALGORITHMS:
        raise ProofError("DPoP proof algorithm not allowed")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & jwk.keys():
        raise ProofError("DPoP proof must carry a public jwk")
    key = bind_key(jwk, alg)
    if key is None:
        raise ProofError("DPoP key does not match its algorithm")
    try:
        payload = json.loads(JWS.decode(proof, key=key, algorithms=[alg]))
    except (InvalidTokenError, ValueError) as exc:
        raise ProofError("DPoP proof signature invalid") from exc
    if not isinstance(payload, dict):
        raise ProofError("malformed DPoP proof")
    if jwk_thumbprint(jwk) != jkt:
        raise ProofError("DPoP key does not match the token binding")
    if payload.get("htm") != method:
        raise ProofError("DPoP htm mismatch")
    htu = payload.get("htu")
    if not isinstance(htu, str) or normalize_htu(htu) != normalize_htu(url):
        raise ProofError("DPoP htu mismatch")
    expected_ath = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
    if payload.get("ath") != expected_ath:
        raise ProofError("DPoP ath mismatch")
    iat = payload.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        raise ProofError("DPoP proof iat missing")
    if iat > now + policy.leeway or iat < now - policy.max_age:
        raise ProofError("DPoP proof not fresh")
    jti = payload.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise ProofError("DPoP proof jti missing")
    if not replay.check_and_add(jti, ttl=policy.max_age + policy.leeway):
        raise ProofError("DPoP proof replayed")
