"""Request ids and W3C Trace Context (``traceparent``) parsing, free of any HTTP framework.

The gateway is one hop of a distributed trace: it keeps the caller's trace id, mints a new
parent (span) id for the upstream hop, and starts a fresh trace when the incoming header is
absent or malformed, exactly as https://www.w3.org/TR/trace-context/ asks. Request ids are kept
when a client sends a sane one (so logs correlate across hops) and generated otherwise.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import NamedTuple

# Conservative on purpose: request ids end up in logs and headers, so no spaces, quotes or
# control characters, and a length cap against log flooding.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# One regex instead of per-character checks: this runs on every request. Lower-case hex only,
# as the spec requires; a future version may append "-..." fields after the flags.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceParent(NamedTuple):
    version: str
    trace_id: str
    parent_id: str
    flags: str

    def header(self) -> str:
        return f"{self.version}-{self.trace_id}-{self.parent_id}-{self.flags}"

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The parsed header, or None when it is absent or invalid (then a new trace starts)."""
    if value is None:
        return None
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(version, trace_id, parent_id, flags)


def fast_random_bytes(nbytes: int) -> bytes:
    """Ids need to be unique, not secret: the seeded PRNG (re-seeded by Python after fork, so
    SO_REUSEPORT workers do not share a sequence) saves a getrandom() syscall per id."""
    return random.getrandbits(nbytes * 8).to_bytes(nbytes, "big")


def _random_hex(nbytes: int, random_bytes: Callable[[int], bytes]) -> str:
    # An all-zero id is invalid by the spec; the odds are 2**-64 but the loop costs nothing.
    while True:
        text = random_bytes(nbytes).hex()
        if text.strip("0"):
            return text


def next_hop(
    incoming: TraceParent | None,
    *,
    random_bytes: Callable[[int], bytes] = fast_random_bytes,
) -> TraceParent:
    """The traceparent to send upstream: same trace and flags, new parent id.

    We always emit version 00 because that is the only version whose format we know; the spec
    asks a vendor to downgrade to what it understands. A new trace is not sampled, since the
    gateway itself records no spans.
    """
    if incoming is None:
        return TraceParent("00", _random_hex(16, random_bytes), _random_hex(8, random_bytes), "00")
    return TraceParent("00", incoming.trace_id, _random_hex(8, random_bytes), incoming.flags)


def valid_request_id(value: str | None) -> bool:
    return value is not None and _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """32 hex digits (128 random bits), the size of a UUID without its formatting cost."""
    return f"{random.getrandbits(128):032x}"
