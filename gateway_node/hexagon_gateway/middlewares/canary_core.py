"""Canary selection: which side of a split a request lands on, free of any HTTP framework.

Explicit opt-ins win (a matching header, then a matching cookie); otherwise the configured
weight decides. With a sticky key the weight is applied to a deterministic hash of the key, so a
given user stays on one side for as long as the weight does not change; without one (or when the
key is missing from a request) an injectable random source decides per request.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Weights are percentages with up to two decimals; hashing into 10000 slots honours that.
SLOTS = 10_000


@dataclass(frozen=True, slots=True)
class Match:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class StickyKey:
    source: str  # "header" | "cookie" | "client"
    name: str = ""


@dataclass(frozen=True, slots=True)
class CanaryRule:
    upstream: str
    weight: float = 0.0
    header: Match | None = None
    cookie: Match | None = None
    sticky: StickyKey | None = None


def parse_sticky_key(text: str) -> StickyKey:
    """``header:<name>`` | ``cookie:<name>`` | ``client``; ValueError otherwise."""
    if text == "client":
        return StickyKey("client")
    source, sep, name = text.partition(":")
    if sep and source in ("header", "cookie") and name and name.strip() == name:
        return StickyKey(source, name.lower() if source == "header" else name)
    raise ValueError("header:<name>, cookie:<name> or client")


def slot_of(key: str, *, salt: str) -> int:
    """Deterministic slot in [0, SLOTS) for a key; blake2b keeps it stable across processes
    (Python's ``hash`` is randomised per process, which would break stickiness across pods)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, key=salt.encode("utf-8")[:64])
    return int.from_bytes(digest.digest(), "big") % SLOTS


@dataclass(frozen=True, slots=True)
class Choice:
    canary: bool
    reason: str  # "header" | "cookie" | "sticky" | "weight" | "none"


def choose(
    rule: CanaryRule,
    *,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    client: str,
    rand: Callable[[], float] = random.random,
) -> Choice:
    """Decide for one request. ``headers`` must be case-insensitive (or lower-cased keys)."""
    if rule.header is not None and headers.get(rule.header.name) == rule.header.value:
        return Choice(True, "header")
    if rule.cookie is not None and cookies.get(rule.cookie.name) == rule.cookie.value:
        return Choice(True, "cookie")
    if rule.weight <= 0:
        return Choice(False, "none")
    threshold = round(rule.weight * SLOTS / 100)
    key = _sticky_value(rule.sticky, headers=headers, cookies=cookies, client=client)
    if key is not None:
        return Choice(slot_of(key, salt=rule.upstream) < threshold, "sticky")
    return Choice(rand() * SLOTS < threshold, "weight")


def _sticky_value(
    sticky: StickyKey | None,
    *,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    client: str,
) -> str | None:
    if sticky is None:
        return None
    if sticky.source == "client":
        return client or None
    source = headers if sticky.source == "header" else cookies
    return source.get(sticky.name) or None
