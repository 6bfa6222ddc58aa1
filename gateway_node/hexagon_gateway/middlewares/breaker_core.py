"""Circuit-breaker state machine on two signals, free of any HTTP framework.

Signal one is in-flight concurrency: past ``max_concurrent`` a request is shed at once. Signal
two is the tail latency (and optionally the error share) over a sliding window kept as a ring of
time buckets. "P99 above the threshold" is evaluated exactly and in O(1) per request without
storing latencies: the 99th percentile exceeds T exactly when more than 1 % of the samples
exceed T, so each bucket only counts samples, slow samples and errors.

States: closed -> open (hold) -> half-open (a few probes) -> closed, or back to open with a
doubled hold when a probe is unhealthy. Holds double on consecutive trips up to a cap, and the
streak is forgotten after the breaker stays closed for as long as that cap, which keeps a
flapping upstream mostly off instead of oscillating.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

Clock = Callable[[], float]

# Buckets per window: enough resolution for a sliding window, few enough to sum cheaply.
BUCKETS_PER_WINDOW = 10


class State(IntEnum):
    """Numeric values are the ``breaker_state`` gauge the admin port exports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class Settings:
    max_concurrent: int
    p99_ms: float
    window_seconds: float = 10.0
    min_requests: int = 20
    open_seconds: float = 5.0
    max_open_seconds: float = 60.0
    half_open_requests: int = 5
    # None disables the error signal; otherwise a share in percent (0..100).
    error_percent: float | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    """Proof of admission; hand it back to ``release`` exactly once."""

    epoch: int
    started: float
    probe: bool


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str  # "open" | "half_open_busy" | "max_concurrent"
    retry_after: float


@dataclass(slots=True)
class _Bucket:
    start: float = -math.inf
    total: int = 0
    slow: int = 0
    errors: int = 0


class Breaker:
    """The state machine. Not thread-safe; one instance per route per event loop."""

    def __init__(self, settings: Settings, *, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self._width = settings.window_seconds / BUCKETS_PER_WINDOW
        self._ring = [_Bucket() for _ in range(BUCKETS_PER_WINDOW)]
        self._state = State.CLOSED
        # Bumped on every transition so results of requests admitted under an older state
        # (say, a slow request from before the trip) cannot vote in the current one.
        self._epoch = 0
        self._open_until = 0.0
        self._streak = 0
        self._closed_at = -math.inf
        self._probes_admitted = 0
        self._probes_healthy = 0
        self.inflight = 0
        self.trips_total = 0
        self.rejected_total = 0

    # -- observation -----------------------------------------------------------------------
    @property
    def state(self) -> State:
        self._maybe_half_open(self._clock())
        return self._state

    @property
    def current_hold(self) -> float:
        """Hold time the next trip would get, given the current streak."""
        return self._hold_for(self._streak + 1)

    def window_counts(self) -> tuple[int, int, int]:
        """(samples, slow samples, errors) inside the sliding window now."""
        now = self._clock()
        total = slow = errors = 0
        for bucket in self._ring:
            if now - bucket.start < self.settings.window_seconds:
                total += bucket.total
                slow += bucket.slow
                errors += bucket.errors
        return total, slow, errors

    # -- admission -------------------------------------------------------------------------
    def try_acquire(self) -> Ticket | Rejection:
        now = self._clock()
        self._maybe_half_open(now)
        if self._state is State.OPEN:
            self.rejected_total += 1
            return Rejection("open", self._open_until - now)
        if self._state is State.HALF_OPEN:
            if self._probes_admitted >= self.settings.half_open_requests:
                self.rejected_total += 1
                return Rejection("half_open_busy", self.settings.open_seconds)
            self._probes_admitted += 1
            self.inflight += 1
            return Ticket(self._epoch, now, probe=True)
        if self.inflight >= self.settings.max_concurrent:
            self.rejected_total += 1
            return Rejection("max_concurrent", 0.0)
        self.inflight += 1
        return Ticket(self._epoch, now, probe=False)

    def release(self, ticket: Ticket, *, ok: bool | None, first_byte: float | None = None) -> None:
        """Report the outcome: ok=True/False, or None when there is no verdict (cancelled).

        ``first_byte`` (clock time the response started) makes the latency sample the upstream's
        time to first byte rather than the whole transfer to a possibly slow client.
        """
        self.inflight -= 1
        now = self._clock()
        self._maybe_half_open(now)
        if ticket.epoch != self._epoch:
            return
        end = now if first_byte is None else min(now, first_byte)
        slow = (end - ticket.started) * 1000.0 > self.settings.p99_ms
        if ticket.probe:
            self._probe_result(now, ok=ok, slow=slow)
        elif ok is not None:
            self._record(now, slow=slow, error=not ok)

    # -- internals -------------------------------------------------------------------------
    def _record(self, now: float, *, slow: bool, error: bool) -> None:
        index = int(now // self._width) % BUCKETS_PER_WINDOW
        bucket = self._ring[index]
        start = (now // self._width) * self._width
        if bucket.start != start:
            bucket.start, bucket.total, bucket.slow, bucket.errors = start, 0, 0, 0
        bucket.total += 1
        bucket.slow += slow
        bucket.errors += error
        if self._should_trip():
            self._trip(now)

    def _should_trip(self) -> bool:
        total, slow, errors = self.window_counts()
        if total < self.settings.min_requests:
            return False
        # P99 > p99_ms  <=>  more than 1 % of samples slower than p99_ms (integer math, exact).
        if slow * 100 > total:
            return True
        limit = self.settings.error_percent
        return limit is not None and errors * 100 > limit * total

    def _probe_result(self, now: float, *, ok: bool | None, slow: bool) -> None:
        if ok is None:
            self._probes_admitted -= 1  # free the slot for another probe
            return
        if not ok or slow:
            self._trip(now)
            return
        self._probes_healthy += 1
        if self._probes_healthy >= self.settings.half_open_requests:
            self._transition(State.CLOSED)
            self._closed_at = now
            for bucket in self._ring:
                bucket.start = -math.inf

    def _trip(self, now: float) -> None:
        if now - self._closed_at >= self.settings.max_open_seconds and self._state is State.CLOSED:
            self._streak = 0
        self._streak += 1
        self.trips_total += 1
        self._open_until = now + self._hold_for(self._streak)
        self._transition(State.OPEN)

    def _hold_for(self, streak: int) -> float:
        base = self.settings.open_seconds
        # The exponent is clamped so a breaker flapping for days cannot overflow a float.
        doubled = base * 2.0 ** min(streak - 1, 32)
        return min(doubled, max(base, self.settings.max_open_seconds))

    def _maybe_half_open(self, now: float) -> None:
        if self._state is State.OPEN and now >= self._open_until:
            self._transition(State.HALF_OPEN)

    def _transition(self, state: State) -> None:
        self._state = state
        self._epoch += 1
        self._probes_admitted = 0
        self._probes_healthy = 0
