"""Request ids and W3C Trace Context (``traceparent``) parsing, free of any HTTP framework.

The gateway is one hop of a distributed trace: it keeps the caller's trace id, mints a new
parent (span) id for the upstream hop, and starts a fresh trace when the incoming header is
absent or malformed, exactly as https://www.w3.org/TR/trace-context/ asks. Request ids are kept
when a client sends a sane one (so logs correlate across hops) and generated otherwise.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

# Conservative on purpose: request ids end up in logs and headers, so no spaces, quotes or
# control characters, and a length cap against log flooding.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    version: str
    trace_id: str
    parent_id: str
    flags: str

    def header(self) -> str:
        return f"{self.version}-{self.trace_id}-{self.parent_id}-{self.flags}"

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(ch in _HEX for ch in text)


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The parsed header, or None when it is absent or invalid (then a new trace starts)."""
    if value is None:
        return None
    value = value.strip(" \t")
    # 55 = 2 + 1 + 32 + 1 + 16 + 1 + 2; future versions may append "-..." fields.
    if len(value) < 55:
        return None
    version = value[:2]
    if not _is_hex(version, 2) or version == "ff":
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    head = value[:55]
    if head[2] != "-" or head[35] != "-" or head[52] != "-":
        return None
    trace_id, parent_id, flags = head[3:35], head[36:52], head[53:55]
    if not _is_hex(trace_id, 32) or trace_id == _ZERO_TRACE:
        return None
    if not _is_hex(parent_id, 16) or parent_id == _ZERO_SPAN:
        return None
    if not _is_hex(flags, 2):
        return None
    return TraceParent(version, trace_id, parent_id, flags)


def _random_hex(nbytes: int, random_bytes: Callable[[int], bytes]) -> str:
    # An all-zero id is invalid by the spec; the odds are 2**-64 but the loop costs nothing.
    while True:
        text = random_bytes(nbytes).hex()
        if text.strip("0"):
            return text


def next_hop(
    incoming: TraceParent | None,
    *,
    random_bytes: Callable[[int], bytes] = os.urandom,
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
    return str(uuid.uuid4())
