"""Thresholds and timings of the self-heal loop, parsed once from ``spec.selfHeal``.

Why a module: the verdicts, the storm policy and the heal plan all read the same numbers,
and each must be testable with any value. Defaults follow DESIGN.md (P99 800 ms over 3
polls, a 15-point error-rate rise, a 60 s window, a 10 s probe deadline).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HealSettings:
    """Every knob of observe/decide/heal; field names are spec.selfHeal keys in snake_case."""

    # --- detection
    p99_threshold_ms: float = 800.0
    consecutive_breaches: int = 3
    error_rate_rise_percent: float = 15.0
    window_seconds: float = 60.0
    # Below this many requests per second a P99 or error share is noise, so it is not judged.
    min_request_rate: float = 0.5
    # A scrape older than this is stale (about three scrape intervals).
    stale_after_seconds: float = 30.0
    # --- storm protection
    enabled: bool = True
    paused: bool = False
    max_unavailable_percent: float = 25.0
    # "Several nodes" for CorrelatedFailure; "most pods" means strictly more than half.
    correlated_min_nodes: int = 2
    cooldown_seconds: float = 300.0
    backoff_base_seconds: float = 30.0
    backoff_max_seconds: float = 600.0
    degraded_after_failures: int = 3
    # --- heal steps
    drain_seconds: float = 5.0
    probe_timeout_ms: int = 5000
    probe_deadline_seconds: float = 10.0
    recovery_hold_seconds: float = 30.0
    recovery_timeout_seconds: float = 180.0
    respawn_timeout_seconds: float = 180.0
    restore_wait_seconds: float = 120.0
    ramp_weights: tuple[int, ...] = (10, 50, 100)
    ramp_step_seconds: float = 5.0
    max_attempts: int = 2
    action_retry_seconds: float = 15.0
    max_action_retries: int = 5
    history_limit: int = 20

    def __post_init__(self) -> None:
        problems = []
        if self.consecutive_breaches < 1:
            problems.append(f"consecutiveBreaches must be >= 1, got {self.consecutive_breaches}")
        if not 0 < self.max_unavailable_percent <= 100:
            problems.append(
                f"maxUnavailablePercent must be in (0, 100], got {self.max_unavailable_percent}"
            )
        if self.window_seconds <= 0:
            problems.append(f"windowSeconds must be > 0, got {self.window_seconds}")
        if not self.ramp_weights or any(not 0 < w <= 100 for w in self.ramp_weights):
            problems.append(f"rampWeights must be weights in (0, 100], got {self.ramp_weights}")
        if self.max_attempts < 1:
            problems.append(f"maxAttempts must be >= 1, got {self.max_attempts}")
        if problems:
            raise ValueError("; ".join(problems))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def settings_from_spec(self_heal: Mapping[str, Any] | None) -> HealSettings:
    """Build settings from a ``spec.selfHeal`` mapping with camelCase keys.

    Unknown keys are ignored (the CRD schema is the gatekeeper); a known key with a value of
    the wrong type raises ``ValueError`` naming the field, the value and what was expected.
    """
    fields = {f.name: f for f in dataclasses.fields(HealSettings)}
    values: dict[str, Any] = {}
    for key, raw in (self_heal or {}).items():
        name = _snake(key)
        if name not in fields:
            continue
        default = getattr(HealSettings, name)
        try:
            if isinstance(default, bool):
                if not isinstance(raw, bool):
                    raise TypeError
                values[name] = raw
            elif isinstance(default, tuple):
                values[name] = tuple(int(v) for v in raw)
            elif isinstance(default, int):
                if isinstance(raw, bool):
                    raise TypeError
                values[name] = int(raw)
            else:
                if isinstance(raw, bool):
                    raise TypeError
                values[name] = float(raw)
        except (TypeError, ValueError):
            kind = type(default).__name__
            raise ValueError(f"spec.selfHeal.{key}: expected {kind}, got {raw!r}") from None
    return HealSettings(**values)


def settings_from_dataclass(spec: Any, **overrides: Any) -> HealSettings:
    """Build settings from a typed spec object (e.g. ``api.SelfHealSpec``) by field name.

    Fields the spec does not have keep their defaults; ``overrides`` win over both (e.g.
    ``stale_after_seconds`` derived from the poll interval by the caller).
    """
    names = {f.name for f in dataclasses.fields(HealSettings)}
    values = {n: getattr(spec, n) for n in names if hasattr(spec, n)}
    values.update(overrides)
    return HealSettings(**values)
