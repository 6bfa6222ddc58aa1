"""Token-bucket arithmetic and a bounded bucket table, free of any HTTP framework.

The rate limiter's decisions (admit or reject, how long to wait, what to advertise in the
``RateLimit-*`` headers) are plain arithmetic over an injectable clock, so they live here and
are table-tested exactly; ``ratelimit.py`` only maps requests to keys and decisions to responses.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one take: ``retry_after`` and ``reset`` are seconds (floats, not rounded)."""

    allowed: bool
    remaining: int
    retry_after: float
    reset: float


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucketTable:
    """Token buckets keyed by an opaque string, at most ``max_keys`` of them (LRU eviction).

    Bounding the table matters because keys come from clients (addresses, header values): an
    unbounded dict would let a scanner grow gateway memory without limit. An evicted key comes
    back with a full bucket, which errs on the side of admitting traffic.
    """

    def __init__(self, *, rate: float, burst: int, max_keys: int, clock: Clock) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.rejected_total = 0
        self.evicted_total = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> Decision:
        """Take one token for ``key`` if one is available; never blocks."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
                self.evicted_total += 1
        else:
            self._buckets.move_to_end(key)
            # A clock that steps backwards must not mint tokens, hence max(0, ...).
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Decision(
                allowed=True,
                remaining=math.floor(bucket.tokens),
                retry_after=0.0,
                reset=(self.burst - bucket.tokens) / self.rate,
            )
        self.rejected_total += 1
        wait = (1.0 - bucket.tokens) / self.rate
        return Decision(allowed=False, remaining=0, retry_after=wait, reset=wait)


def header_seconds(seconds: float) -> int:
    """Seconds as HTTP wants them: a whole number, rounded up so clients never retry too early.

    A tiny epsilon absorbs float noise (0.1 * 30 is 3.0000000000000004, not worth a 4).
    """
    return max(0, math.ceil(seconds - 1e-9))
