"""Fault injection state, for tests and demos of healing.

Latency and error faults apply to data requests only, so the operator can still scrape the
pod and watch its P99 or error rate climb. A hang is different on purpose: it blocks the event
loop itself, the way a wedged process (a deadlock, a blocking call gone wrong) behaves, so the
data port stops answering *and* /metrics and /debug/probe stop answering too; that is what the
operator's probe-then-respawn path must detect. Without a duration, a hang lasts until the
process is killed; SIGTERM still ends it (exit code 143).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any


class FaultError(ValueError):
    pass


@dataclass(slots=True)
class FaultState:
    latency_ms: int = 0
    error_rate: float = 0.0
    error_code: int = 503
    until: float | None = None  # monotonic deadline, None = until cleared
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    @property
    def active(self) -> bool:
        if self.latency_ms == 0 and self.error_rate == 0.0:
            return False
        if self.until is not None and self.clock() >= self.until:
            self.clear()
            return False
        return True

    def clear(self) -> None:
        self.latency_ms, self.error_rate, self.error_code, self.until = 0, 0.0, 503, None

    def should_fail(self) -> bool:
        return self.error_rate > 0 and self.rng.random() < self.error_rate

    def describe(self) -> dict[str, Any]:
        remaining = None if self.until is None else max(0.0, self.until - self.clock())
        return {
            "latencyMs": self.latency_ms,
            "errorRate": self.error_rate,
            "errorCode": self.error_code,
            "remainingSeconds": remaining,
        }


def parse_fault(body: Any) -> tuple[int, float, int, bool, float | None]:
    """Validate a fault document; returns (latency_ms, error_rate, error_code, hang, duration)."""
    if not isinstance(body, dict):
        raise FaultError("body: expected a JSON object")
    known = {"latencyMs", "errorRate", "errorCode", "hang", "durationSeconds"}
    for key in body:
        if key not in known:
            raise FaultError(f"{key}: got unknown key, expected one of {sorted(known)}")
    latency = body.get("latencyMs", 0)
    rate = body.get("errorRate", 0)
    code = body.get("errorCode", 503)
    hang = body.get("hang", False)
    duration = body.get("durationSeconds")
    if not isinstance(latency, int) or isinstance(latency, bool) or not 0 <= latency <= 600_000:
        raise FaultError(f"latencyMs: got {latency!r}, expected an integer in 0..600000")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise FaultError(f"errorRate: got {rate!r}, expected a number in 0..1")
    if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
        raise FaultError(f"errorCode: got {code!r}, expected an integer in 400..599")
    if not isinstance(hang, bool):
        raise FaultError(f"hang: got {hang!r}, expected true or false")
    if duration is not None and (
        not isinstance(duration, int | float) or isinstance(duration, bool) or duration <= 0
    ):
        raise FaultError(f"durationSeconds: got {duration!r}, expected a positive number")
    return latency, float(rate), code, hang, None if duration is None else float(duration)


def hang_event_loop(duration: float | None) -> None:
    """Block the calling (event loop) thread; runs as a loop callback, after the reply is out."""
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        os._exit(128 + signum)

    previous = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        deadline = None if duration is None else time.monotonic() + duration
        while deadline is None or time.monotonic() < deadline:
            # Short waits so signal handlers get to run between them.
            stop.wait(0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic())))
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
