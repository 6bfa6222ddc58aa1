"""Circuit-breaker transitions, driven step by step on a fake clock.

Each scenario is a script of operations against one breaker; the table covers every transition
(closed->open by latency and by errors, open->half-open, half-open->closed and ->open), the hold
doubling and its cap, concurrency shedding, and the corner cases (stale results, cancellations).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hexagon_gateway.middlewares.breaker_core import Breaker, Rejection, Settings, State, Ticket

BASE = Settings(
    max_concurrent=2,
    p99_ms=100,
    window_seconds=10,
    min_requests=10,
    open_seconds=5,
    max_open_seconds=20,
    half_open_requests=2,
)


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


Op = tuple[Any, ...]

# Operations:
#   ("run", n, ms, ok)         n sequential requests of `ms` latency, all must be admitted
#   ("wait", seconds)          advance the clock
#   ("state", State)           assert the state
#   ("acquire", name)          admit a request and keep its ticket (must be admitted)
#   ("release", name, ok)      release a kept ticket now (ok: True, False or None = cancelled)
#   ("first_byte", name)       the kept request's response starts now (time to first byte)
#   ("reject", reason, secs)   the next request is refused for `reason`, retry-after `secs`
TRIP = [("run", 9, 10, True), ("run", 1, 200, True), ("state", State.OPEN)]
TO_HALF_OPEN = [("wait", 5), ("state", State.HALF_OPEN)]
PROBES_OK = [("run", 2, 10, True), ("state", State.CLOSED)]

SLOW_DOWNLOAD = [("acquire", "d"), ("wait", 0.05), ("first_byte", "d"), ("wait", 30)]
SLOW_FIRST_BYTE = [("acquire", "d"), ("wait", 0.2), ("first_byte", "d"), ("wait", 0.01)]

SCENARIOS = [
    pytest.param(BASE, TRIP, id="slow-share-over-1pct-trips"),
    pytest.param(BASE, [("run", 9, 500, True), ("state", State.CLOSED)], id="below-min-requests"),
    pytest.param(
        BASE,
        [("run", 9, 10, True), *SLOW_DOWNLOAD, ("release", "d", True), ("state", State.CLOSED)],
        id="slow-client-download-is-not-slow-upstream",
    ),
    pytest.param(
        BASE,
        [("run", 9, 10, True), *SLOW_FIRST_BYTE, ("release", "d", True), ("state", State.OPEN)],
        id="slow-first-byte-counts",
    ),
    pytest.param(
        replace(BASE, window_seconds=100, min_requests=10),
        [
            ("run", 99, 1, True),
            ("run", 1, 101, True),
            ("state", State.CLOSED),  # exactly 1 % slow: P99 is still within the threshold
            ("run", 1, 101, True),
            ("state", State.OPEN),
        ],
        id="exactly-1pct-slow-holds-then-trips",
    ),
    pytest.param(
        BASE,
        [("run", 20, 10, False), ("state", State.CLOSED)],
        id="errors-ignored-without-threshold",
    ),
    pytest.param(
        replace(BASE, error_percent=50),
        [
            ("run", 5, 10, True),
            ("run", 5, 10, False),
            ("state", State.CLOSED),  # 50 % is not above 50 %
            ("run", 1, 10, False),
            ("state", State.OPEN),
        ],
        id="error-share-over-threshold-trips",
    ),
    pytest.param(
        BASE,
        [("run", 9, 10, True), ("wait", 11), ("run", 1, 200, True), ("state", State.CLOSED)],
        id="window-slides-old-samples-out",
    ),
    pytest.param(
        BASE,
        [
            *TRIP,
            ("reject", "open", 5),
            ("wait", 4.9),
            ("reject", "open", 0.1),
            ("wait", 0.1),
            ("state", State.HALF_OPEN),
        ],
        id="open-holds-then-half-opens",
    ),
    pytest.param(
        BASE,
        [
            *TRIP,
            *TO_HALF_OPEN,
            ("acquire", "p1"),
            ("acquire", "p2"),
            ("reject", "half_open_busy", 5),
            ("wait", 0.01),
            ("release", "p1", True),
            ("state", State.HALF_OPEN),  # one healthy probe is not enough
            ("reject", "half_open_busy", 5),  # the probe budget is spent, not just in use
            ("release", "p2", True),
            ("state", State.CLOSED),
        ],
        id="half-open-admits-limited-probes-then-closes",
    ),
    pytest.param(
        BASE,
        [
            *TRIP,
            *TO_HALF_OPEN,
            ("run", 1, 200, True),
            ("state", State.OPEN),
            ("reject", "open", 10),
        ],
        id="slow-probe-reopens-with-doubled-hold",
    ),
    pytest.param(
        BASE,
        [
            *TRIP,
            *TO_HALF_OPEN,
            ("run", 1, 10, False),
            ("state", State.OPEN),
            ("reject", "open", 10),
        ],
        id="failed-probe-reopens",
    ),
    pytest.param(
        BASE,
        [
            *TRIP,
            *TO_HALF_OPEN,
            ("run", 1, 200, True),
            ("wait", 10),
            ("run", 1, 200, True),
            ("reject", "open", 20),
            ("wait", 20),
            ("run", 1, 200, True),
            ("reject", "open", 20),  # capped at maxOpenSeconds
        ],
        id="hold-doubles-up-to-cap",
    ),
    pytest.param(
        BASE,
        [*TRIP, *TO_HALF_OPEN, *PROBES_OK, *TRIP, ("reject", "open", 10)],
        id="trip-soon-after-close-keeps-streak",
    ),
    pytest.param(
        BASE,
        [*TRIP, *TO_HALF_OPEN, *PROBES_OK, ("wait", 20), *TRIP, ("reject", "open", 5)],
        id="long-healthy-close-forgets-streak",
    ),
    pytest.param(
        BASE,
        [
            ("acquire", "a"),
            ("acquire", "b"),
            ("reject", "max_concurrent", 0),
            ("state", State.CLOSED),  # shedding is not a trip
            ("release", "a", True),
            ("acquire", "c"),
        ],
        id="concurrency-sheds-without-tripping",
    ),
    pytest.param(
        BASE,
        [
            ("acquire", "old"),
            *TRIP,
            *TO_HALF_OPEN,
            ("release", "old", False),  # admitted before the trip: no vote now
            ("state", State.HALF_OPEN),
            *PROBES_OK,
        ],
        id="results-from-before-a-transition-are-ignored",
    ),
    pytest.param(
        BASE,
        [
            *TRIP,
            *TO_HALF_OPEN,
            ("acquire", "p1"),
            ("acquire", "p2"),
            ("release", "p1", None),  # client went away: no verdict, slot freed
            ("state", State.HALF_OPEN),
            ("acquire", "p3"),
            ("release", "p2", True),
            ("release", "p3", True),
            ("state", State.CLOSED),
        ],
        id="cancelled-probe-frees-its-slot",
    ),
    pytest.param(
        BASE,
        [("run", 9, 10, True), ("acquire", "x"), ("release", "x", None), ("state", State.CLOSED)],
        id="cancelled-request-is-not-a-sample",
    ),
    pytest.param(
        BASE,
        [*TRIP, *TO_HALF_OPEN, *PROBES_OK, ("run", 9, 10, True), ("state", State.CLOSED)],
        id="close-starts-a-fresh-window",
    ),
]


@pytest.mark.parametrize(("settings", "script"), SCENARIOS)
def test_breaker_script(settings: Settings, script: list[Op]) -> None:
    clock = Clock()
    breaker = Breaker(settings, clock=clock)
    tickets: dict[str, Ticket] = {}
    first_bytes: dict[str, float] = {}
    for step, op in enumerate(script):
        where = f"step {step}: {op}"
        match op:
            case ("run", int(n), ms, ok):
                for _ in range(n):
                    ticket = breaker.try_acquire()
                    assert isinstance(ticket, Ticket), where
                    clock.now += ms / 1000
                    breaker.release(ticket, ok=ok)
            case ("wait", seconds):
                clock.now += seconds
            case ("state", expected):
                assert breaker.state is expected, where
            case ("acquire", str(name)):
                ticket = breaker.try_acquire()
                assert isinstance(ticket, Ticket), where
                tickets[name] = ticket
            case ("release", str(name), ok):
                breaker.release(tickets.pop(name), ok=ok, first_byte=first_bytes.pop(name, None))
            case ("first_byte", str(name)):
                first_bytes[name] = clock.now
            case ("reject", str(reason), seconds):
                rejection = breaker.try_acquire()
                assert isinstance(rejection, Rejection), where
                assert rejection.reason == reason, where
                assert rejection.retry_after == pytest.approx(seconds), where
            case _:
                raise AssertionError(f"bad op {op}")


def test_counters_follow_transitions() -> None:
    clock = Clock()
    breaker = Breaker(BASE, clock=clock)
    for _ in range(10):
        ticket = breaker.try_acquire()
        assert isinstance(ticket, Ticket)
        clock.now += 0.2
        breaker.release(ticket, ok=True)
    assert breaker.trips_total == 1
    assert breaker.inflight == 0
    assert isinstance(breaker.try_acquire(), Rejection)
    assert breaker.rejected_total == 1
    assert breaker.window_counts() == (10, 10, 0)


def test_hold_never_overflows_on_endless_flapping() -> None:
    clock = Clock()
    breaker = Breaker(replace(BASE, min_requests=1, half_open_requests=1), clock=clock)
    for _ in range(2000):
        ticket = breaker.try_acquire()
        assert isinstance(ticket, Ticket)
        clock.now += 1.0
        breaker.release(ticket, ok=breaker.state is not State.HALF_OPEN)
        clock.now += 21
    assert breaker.trips_total == 2000
    assert breaker.current_hold == 20
