"""What counts as a *valid* probe answer, and what of it goes into the heal record.

Why: DESIGN.md keeps a pod alive when "a valid answer arrives within the deadline". An HTTP
200 alone is not enough: the gateway answers ``partial`` when it could not gather its own
netstack in time, and an event loop lagging by seconds answers but cannot serve. The
executor does the HTTP call; this pure function judges the result, so the rule is
table-tested and the same everywhere. Only a summary is recorded (status has size limits;
the full ``/proc/net`` tables belong in logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hexagon_operator.health.transitions import ProbeResult

# Fields of the gateway's netstack answer worth keeping in the heal record.
SUMMARY_FIELDS = (
    "pid",
    "eventLoopLagMs",
    "eventLoopLagMaxMs",
    "tasks",
    "openSockets",
    "inFlight",
    "draining",
    "configLoaded",
)
DEFAULT_MAX_LAG_MS = 1000.0


def judge_probe(
    *,
    status: int | None,
    body: Any,
    error: str | None = None,
    max_lag_ms: float = DEFAULT_MAX_LAG_MS,
) -> ProbeResult:
    """Judge one ``POST /debug/probe?mode=netstack`` result.

    ``status`` is None when no HTTP answer arrived (timeout, refused); ``error`` then says why.
    """
    if status is None:
        return ProbeResult(False, error=error or "no answer")
    if status != 200:
        return ProbeResult(False, error=f"HTTP {status}: {_snippet(body)}")
    if not isinstance(body, Mapping) or body.get("mode") != "netstack":
        return ProbeResult(False, error=f"not a netstack answer: {_snippet(body)}")
    summary = {k: body[k] for k in SUMMARY_FIELDS if k in body}
    if body.get("partial"):
        return ProbeResult(
            False, error=f"partial answer: the pod could not report in time {summary}"
        )
    lag = body.get("eventLoopLagMs")
    if not isinstance(lag, int | float) or isinstance(lag, bool):
        return ProbeResult(False, error=f"answer without eventLoopLagMs: {_snippet(body)}")
    if lag > max_lag_ms:
        return ProbeResult(
            False, error=f"event loop lag {lag:g} ms above {max_lag_ms:g} ms: alive but stuck"
        )
    return ProbeResult(True, answer=summary)


def _snippet(body: Any, limit: int = 200) -> str:
    text = repr(body)
    return text if len(text) <= limit else text[:limit] + "..."
