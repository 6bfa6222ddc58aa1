"""Pure header rewriting for the proxy: hop-by-hop removal and X-Forwarded-* / Forwarded.

Kept free of aiohttp so the rules (which headers a proxy must drop, when a client's own
X-Forwarded-For may be believed) are unit-tested as plain data. The request head is serialized
straight to bytes here, once, because that is what the upstream socket wants.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

# RFC 9110 7.6.1 plus the legacy ones every proxy strips.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
_FORWARDING = frozenset({"x-forwarded-for", "x-forwarded-proto", "forwarded", "expect"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """Is this peer one of the configured proxies? Cached, since peers repeat."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self._networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    def __contains__(self, peer: object) -> bool:
        if not isinstance(peer, str) or not self._networks:
            return False
        hit = self._cache.get(peer)
        if hit is None:
            try:
                addr = ipaddress.ip_address(peer)
                hit = any(addr in net for net in self._networks)
            except ValueError:
                hit = False
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[peer] = hit
        return hit


def client_ip(peer: str, forwarded_for: str | None, trusted: TrustedPeers) -> str:
    """The client address: walk X-Forwarded-For right to left past our trusted proxies."""
    if not forwarded_for or peer not in trusted:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer


_DROP = frozenset(n.encode() for n in HOP_BY_HOP | _FORWARDING)


def _forwarded_node(peer: str) -> str:
    return f'"[{peer}]"' if ":" in peer else peer


def request_head(
    *,
    method: str,
    target: str,
    raw_headers: Iterable[tuple[bytes, bytes]],
    peer: str,
    trusted: bool,
    scheme: str,
    chunked: bool,
    upgrade: bytes | None = None,
) -> bytes:
    """Serialize the upstream request head (method line + headers + blank line)."""
    named: set[bytes] | None = None
    out = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
    kept: list[bytes] = []  # lower-case names of `out[1:]`, to honour Connection-named headers
    xff = proto = fwd = None
    for name, value in raw_headers:
        lname = name.lower()
        if lname in _DROP:
            if lname == b"connection":
                named = (named or set()) | {t.strip().lower() for t in value.split(b",")}
            elif trusted:
                if lname == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                elif lname == b"x-forwarded-proto" and proto is None:
                    proto = value
                elif lname == b"forwarded":
                    fwd = value if fwd is None else fwd + b", " + value
            continue
        out.append(name + b": " + value + b"\r\n")
        kept.append(lname)
    if named:
        out = [out[0]] + [
            line for lname, line in zip(kept, out[1:], strict=True) if lname not in named
        ]
    peer_b = peer.encode("latin-1")
    out.append(b"X-Forwarded-For: " + (xff + b", " + peer_b if xff else peer_b) + b"\r\n")
    out.append(b"X-Forwarded-Proto: " + (proto or scheme.encode("latin-1")) + b"\r\n")
    here = f"for={_forwarded_node(peer)};proto={scheme}".encode("latin-1")
    out.append(b"Forwarded: " + (fwd + b", " + here if fwd else here) + b"\r\n")
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade is not None:
        out.append(b"Connection: Upgrade\r\nUpgrade: " + upgrade + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


_RESPONSE_DROP = frozenset(n.encode() for n in HOP_BY_HOP) | {b"content-length"}


def response_lines(raw: Iterable[tuple[bytes, bytes]], named: set[bytes] | None) -> list[bytes]:
    """Like response_headers, on raw (lower-case name, line) pairs, for the byte-level path."""
    drop = _RESPONSE_DROP if not named else _RESPONSE_DROP | named
    return [line for lname, line in raw if lname not in drop]


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Upstream response headers minus hop-by-hop and framing (the server re-frames)."""
    pairs = list(headers)
    named: set[str] = set()
    for name, value in pairs:
        if name.lower() == "connection":
            named.update(t.strip().lower() for t in value.split(","))
    return [
        (n, v)
        for n, v in pairs
        if (ln := n.lower()) not in HOP_BY_HOP and ln != "content-length" and ln not in named
    ]
