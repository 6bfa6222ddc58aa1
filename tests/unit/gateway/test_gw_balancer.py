"""Balancer: weighted least-connections, locality, ejection with an injectable clock, budget."""

from __future__ import annotations

from collections import Counter

import pytest
from hexagon_gateway.balancer import CONNECT_FAILURE, ERROR_5XX, SUCCESS, Pool
from hexagon_gateway.config import Endpoint, OutlierDetection


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def eps(*specs: tuple[int, str | None, int | None]) -> list[Endpoint]:
    return [
        Endpoint(address=f"10.0.0.{i}:80", host=f"10.0.0.{i}", port=80, weight=w, zone=z, ring=r)
        for i, (w, z, r) in enumerate(specs)
    ]


OD = OutlierDetection(
    consecutive_5xx=3,
    consecutive_connect_failures=2,
    base_ejection_ms=10_000,
    max_ejection_percent=50,
)


def pool(endpoints: list[Endpoint], clock: Clock, **kw: object) -> Pool:
    return Pool(endpoints, outlier=OD, clock=clock, **kw)  # type: ignore[arg-type]


def test_least_connections_prefers_idle_endpoint() -> None:
    p = pool(eps((1, None, None), (1, None, None), (1, None, None)), Clock())
    busy = p.endpoints[0]
    p.start(busy)
    p.start(p.endpoints[1])
    assert p.pick() is p.endpoints[2]


def test_weights_share_load_proportionally() -> None:
    p = pool(eps((3, None, None), (1, None, None)), Clock())
    counts: Counter[int] = Counter()
    held = []
    for _ in range(40):  # keep requests in flight so least-connections sees the load
        st = p.pick()
        assert st is not None
        p.start(st)
        held.append(st)
        counts[st.index] += 1
    assert counts[0] == 30 and counts[1] == 10


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        pytest.param({"10.0.0.0:80": 0}, {1}, id="override-by-address"),
        pytest.param({"10.0.0.1": 0}, {0}, id="override-by-host"),
        pytest.param({}, {0, 1}, id="no-override"),
    ],
)
def test_weight_zero_is_never_chosen(weights: dict[str, int], expected: set[int]) -> None:
    p = pool(eps((1, None, None), (1, None, None)), Clock(), weights=weights)
    chosen = set()
    for _ in range(10):
        st = p.pick()
        assert st is not None
        chosen.add(st.index)
    assert chosen == expected


def test_weight_zero_not_used_even_in_panic() -> None:
    clock = Clock()
    p = pool(eps((1, None, None), (0, None, None)), clock)
    assert p.pick(exclude={0}) is None


def test_round_robin_is_smooth_and_weighted() -> None:
    p = pool(eps((2, None, None), (1, None, None)), Clock(), policy="roundRobin")
    order = []
    for _ in range(6):
        st = p.pick()
        assert st is not None
        order.append(st.index)
    assert order == [0, 1, 0, 0, 1, 0]


@pytest.mark.parametrize(
    ("zone", "ring", "expected"),
    [
        pytest.param("a", None, {0}, id="same-zone"),
        pytest.param(None, 2, {1}, id="same-ring"),
        pytest.param("z", None, {0, 1, 2}, id="unknown-zone-uses-all"),
        pytest.param("a", 2, {0}, id="zone-before-ring"),
    ],
)
def test_locality_preference(zone: str | None, ring: int | None, expected: set[int]) -> None:
    p = pool(eps((1, "a", 1), (1, "b", 2), (1, "c", 1)), Clock(), local_zone=zone, local_ring=ring)
    chosen = set()
    for _ in range(12):
        st = p.pick()
        assert st is not None
        chosen.add(st.index)
    assert chosen == expected


def test_locality_falls_back_when_local_endpoints_ejected() -> None:
    clock = Clock()
    p = pool(
        eps((1, "a", None), (1, "b", None), (1, "b", None), (1, "b", None)), clock, local_zone="a"
    )
    local = p.endpoints[0]
    for _ in range(3):
        p.start(local)
        p.finish(local, ERROR_5XX)
    assert p.is_ejected(local)
    st = p.pick()
    assert st is not None and st.index != 0


def _fail(p: Pool, index: int, outcome: str, times: int) -> None:
    st = p.endpoints[index]
    for _ in range(times):
        p.start(st)
        p.finish(st, outcome)


@pytest.mark.parametrize(
    ("outcome", "times", "ejected"),
    [
        pytest.param(ERROR_5XX, 2, False, id="5xx-below-threshold"),
        pytest.param(ERROR_5XX, 3, True, id="5xx-at-threshold"),
        pytest.param(CONNECT_FAILURE, 1, False, id="connect-below-threshold"),
        pytest.param(CONNECT_FAILURE, 2, True, id="connect-at-threshold"),
    ],
)
def test_consecutive_failures_eject(outcome: str, times: int, ejected: bool) -> None:
    p = pool(eps(*[(1, None, None)] * 4), Clock())
    _fail(p, 0, outcome, times)
    assert p.is_ejected(p.endpoints[0]) is ejected


def test_success_resets_the_consecutive_count() -> None:
    p = pool(eps(*[(1, None, None)] * 4), Clock())
    _fail(p, 0, ERROR_5XX, 2)
    _fail(p, 0, SUCCESS, 1)
    _fail(p, 0, ERROR_5XX, 2)
    assert not p.is_ejected(p.endpoints[0])


def test_ejection_time_grows_with_repeats() -> None:
    clock = Clock()
    p = pool(eps(*[(1, None, None)] * 4), clock)
    _fail(p, 0, ERROR_5XX, 3)
    st = p.endpoints[0]
    assert st.ejected_until == clock.now + 10.0
    clock.now += 10.0
    assert not p.is_ejected(st)
    _fail(p, 0, ERROR_5XX, 3)  # right after return: ejected again, for twice as long
    assert st.ejected_until == clock.now + 20.0
    assert p.ejections_total == 2
    assert p.pick(exclude={1, 2, 3}) is st  # panic mode still answers


def test_never_more_than_max_ejection_percent() -> None:
    p = pool(eps(*[(1, None, None)] * 4), Clock())
    for i in range(4):
        _fail(p, i, ERROR_5XX, 3)
    assert p.ejected_count() == 2  # 50% of 4


def test_single_endpoint_pool_never_ejects() -> None:
    p = pool(eps((1, None, None)), Clock())
    _fail(p, 0, CONNECT_FAILURE, 5)
    assert p.ejected_count() == 0


def test_ejection_multiplier_decays_after_healthy_period() -> None:
    clock = Clock()
    p = pool(eps(*[(1, None, None)] * 2), clock)
    _fail(p, 0, ERROR_5XX, 3)
    st = p.endpoints[0]
    clock.now = st.ejected_until + 10.0  # a whole base period healthy after the ejection
    _fail(p, 0, SUCCESS, 1)
    assert st.ejections == 0


def test_inherit_keeps_ejection_across_reload() -> None:
    clock = Clock()
    old = pool(eps(*[(1, None, None)] * 2), clock)
    _fail(old, 0, ERROR_5XX, 3)
    new = pool(eps(*[(1, None, None)] * 3), clock)
    new.inherit(old)
    assert new.is_ejected(new.endpoints[0]) and not new.is_ejected(new.endpoints[2])


@pytest.mark.parametrize(
    ("active", "retries", "allowed"),
    [
        pytest.param(1, 2, True, id="floor-allows-few"),
        pytest.param(1, 3, False, id="floor-exhausted"),
        pytest.param(100, 19, True, id="under-20-percent"),
        pytest.param(100, 20, False, id="at-20-percent"),
    ],
)
def test_retry_budget(active: int, retries: int, allowed: bool) -> None:
    p = pool(eps((1, None, None)), Clock(), retry_budget_percent=20.0)
    p.active_requests = active
    p.active_retries = retries
    assert p.retry_allowed() is allowed
