"""Pure endpoint choice for one upstream: weights, locality, outlier ejection, retry budget.

No I/O and no event loop: the proxy reports what happened (`start`, `finish` with an outcome)
and asks whom to try next. Time comes from an injectable clock, so ejection windows of tens of
seconds are tested exactly and instantly.

- Weighted least-connections: the endpoint with the lowest (in-flight + 1) / weight wins; ties
  rotate so equal endpoints share load. `roundRobin` is smooth weighted round-robin.
- Locality: endpoints in the gateway's own zone, else its ring, are preferred while any of them
  is healthy; the others take over only when none is.
- Passive outlier ejection (as Envoy's): N consecutive 5xx or connect failures eject an endpoint
  for base * (number of times it was ejected); never more than maxEjectionPercent of the pool.
- Weight 0 (from the endpoint or from the operator's `weights`) means never chosen, not even in
  panic mode when every other endpoint is ejected.
- Retry budget: retries in flight may not exceed budgetPercent of requests in flight (with a
  floor of a few, so a quiet pool can still retry).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from hexagon_gateway.config import Endpoint, OutlierDetection

SUCCESS, ERROR_5XX, CONNECT_FAILURE, LOCAL_ERROR = "success", "5xx", "connect-failure", "local"
MIN_RETRY_CONCURRENCY = 3


@dataclass(slots=True)
class EndpointState:
    endpoint: Endpoint
    index: int
    weight: int
    active: int = 0
    consecutive_5xx: int = 0
    consecutive_connect_failures: int = 0
    ejected_until: float = 0.0
    ejections: int = 0
    last_ejected_at: float = -math.inf
    current: int = 0  # smooth weighted round-robin accumulator

    @property
    def key(self) -> str:
        return self.endpoint.address


class Pool:
    def __init__(
        self,
        endpoints: Iterable[Endpoint],
        *,
        outlier: OutlierDetection,
        policy: str = "leastRequest",
        weights: Mapping[str, int] | None = None,
        local_zone: str | None = None,
        local_ring: int | None = None,
        retry_budget_percent: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        weights = weights or {}
        self.endpoints = [
            EndpointState(endpoint=ep, index=i, weight=_effective_weight(ep, weights))
            for i, ep in enumerate(endpoints)
        ]
        self.outlier = outlier
        self.policy = policy
        self.clock = clock
        self.retry_budget_percent = retry_budget_percent
        self.active_requests = 0
        self.active_retries = 0
        self.ejections_total = 0
        self._rotate = 0
        self._tiers = _locality_tiers(self.endpoints, local_zone, local_ring)

    def inherit(self, old: Pool) -> None:
        """Keep outlier state for endpoints that survive a config reload."""
        previous = {st.key: st for st in old.endpoints}
        for st in self.endpoints:
            prev = previous.get(st.key)
            if prev is not None:
                st.consecutive_5xx = prev.consecutive_5xx
                st.consecutive_connect_failures = prev.consecutive_connect_failures
                st.ejected_until = prev.ejected_until
                st.ejections = prev.ejections
                st.last_ejected_at = prev.last_ejected_at
        self.ejections_total = old.ejections_total

    # -- choice ----------------------------------------------------------------------
    def is_ejected(self, st: EndpointState, now: float | None = None) -> bool:
        return st.ejected_until > (self.clock() if now is None else now)

    def ejected_count(self) -> int:
        now = self.clock()
        return sum(1 for st in self.endpoints if st.ejected_until > now)

    def pick(self, exclude: frozenset[int] | set[int] = frozenset()) -> EndpointState | None:
        now = self.clock()
        for tier in self._tiers:
            eligible = [
                st
                for st in tier
                if st.weight > 0 and st.index not in exclude and st.ejected_until <= now
            ]
            if eligible:
                return self._choose(eligible)
        # Panic: every usable endpoint is ejected or excluded; better a suspect one than none.
        fallback = [st for st in self.endpoints if st.weight > 0 and st.index not in exclude]
        return self._choose(fallback) if fallback else None

    def _choose(self, eligible: list[EndpointState]) -> EndpointState:
        if len(eligible) == 1:
            return eligible[0]
        if self.policy == "roundRobin":
            total = 0
            best = eligible[0]
            for st in eligible:
                st.current += st.weight
                total += st.weight
                if st.current > best.current:
                    best = st
            best.current -= total
            return best
        self._rotate += 1
        n = len(eligible)
        best = eligible[self._rotate % n]
        best_score = (best.active + 1) / best.weight
        for offset in range(1, n):
            st = eligible[(self._rotate + offset) % n]
            score = (st.active + 1) / st.weight
            if score < best_score:
                best, best_score = st, score
        return best

    # -- accounting ------------------------------------------------------------------
    def start(self, st: EndpointState, *, retry: bool = False) -> None:
        st.active += 1
        self.active_requests += 1
        if retry:
            self.active_retries += 1

    def finish(self, st: EndpointState, outcome: str, *, retry: bool = False) -> None:
        st.active -= 1
        self.active_requests -= 1
        if retry:
            self.active_retries -= 1
        od = self.outlier
        if outcome == SUCCESS:
            st.consecutive_5xx = 0
            st.consecutive_connect_failures = 0
            self._decay(st)
            return
        if outcome == ERROR_5XX:
            st.consecutive_5xx += 1
            if od.consecutive_5xx and st.consecutive_5xx >= od.consecutive_5xx:
                self._eject(st)
        elif outcome == CONNECT_FAILURE:
            st.consecutive_connect_failures += 1
            limit = od.consecutive_connect_failures
            if limit and st.consecutive_connect_failures >= limit:
                self._eject(st)

    def _eject(self, st: EndpointState) -> None:
        now = self.clock()
        if st.ejected_until > now:
            return
        allowed = math.floor(len(self.endpoints) * self.outlier.max_ejection_percent / 100)
        if self.ejected_count() + 1 > allowed:
            return
        st.ejections += 1
        st.ejected_until = now + self.outlier.base_ejection_ms / 1000.0 * st.ejections
        st.last_ejected_at = now
        st.consecutive_5xx = 0
        st.consecutive_connect_failures = 0
        self.ejections_total += 1

    def _decay(self, st: EndpointState) -> None:
        # A host that stayed healthy for a whole base period since its last ejection ended
        # earns one ejection back, so the multiplier does not grow forever.
        if st.ejections:
            now = self.clock()
            if now - st.ejected_until >= self.outlier.base_ejection_ms / 1000.0:
                st.ejections -= 1
                st.ejected_until = now
                st.last_ejected_at = now

    def retry_allowed(self) -> bool:
        budget = max(
            MIN_RETRY_CONCURRENCY, self.active_requests * self.retry_budget_percent / 100.0
        )
        return self.active_retries < budget


def _effective_weight(ep: Endpoint, weights: Mapping[str, int]) -> int:
    for key in (ep.name, ep.address, ep.host):
        if key is not None and key in weights:
            return weights[key]
    return ep.weight


def _locality_tiers(
    endpoints: list[EndpointState], zone: str | None, ring: int | None
) -> list[list[EndpointState]]:
    tiers: list[list[EndpointState]] = []
    seen: set[int] = set()
    if zone is not None:
        tiers.append([st for st in endpoints if st.endpoint.zone == zone])
    if ring is not None:
        tiers.append([st for st in endpoints if st.endpoint.ring == ring])
    result = []
    for tier in tiers:
        fresh = [st for st in tier if st.index not in seen]
        seen.update(st.index for st in fresh)
        if fresh:
            result.append(fresh)
    rest = [st for st in endpoints if st.index not in seen]
    if rest:
        result.append(rest)
    return result
