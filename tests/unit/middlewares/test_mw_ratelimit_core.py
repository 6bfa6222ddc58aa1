"""Token-bucket arithmetic and the bounded key table, on a fake clock."""

from __future__ import annotations

import pytest
from hexagon_gateway.middlewares.ratelimit_core import TokenBucketTable, header_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Each step: (advance seconds, expected allowed, expected remaining, expected retry_after).
Step = tuple[float, bool, int, float]


@pytest.mark.parametrize(
    ("rate", "burst", "steps"),
    [
        pytest.param(
            1.0,
            2,
            [(0, True, 1, 0.0), (0, True, 0, 0.0), (0, False, 0, 1.0)],
            id="burst-then-reject",
        ),
        pytest.param(
            2.0,
            1,
            [(0, True, 0, 0.0), (0.25, False, 0, 0.25), (0.25, True, 0, 0.0)],
            id="half-token-then-refilled",
        ),
        pytest.param(
            10.0,
            3,
            [(0, True, 2, 0.0), (0, True, 1, 0.0), (0, True, 0, 0.0), (100, True, 2, 0.0)],
            id="refill-capped-at-burst",
        ),
        pytest.param(
            0.5,
            1,
            [(0, True, 0, 0.0), (0, False, 0, 2.0), (1.0, False, 0, 1.0), (1.0, True, 0, 0.0)],
            id="slow-rate-retry-after-shrinks",
        ),
        pytest.param(
            1.0,
            1,
            [(0, True, 0, 0.0), (-5, False, 0, 1.0)],
            id="clock-backwards-mints-nothing",
        ),
    ],
)
def test_bucket_refill_math(rate: float, burst: int, steps: list[Step]) -> None:
    clock = FakeClock()
    table = TokenBucketTable(rate=rate, burst=burst, max_keys=10, clock=clock)
    for advance, allowed, remaining, retry_after in steps:
        clock.now += advance
        decision = table.take("k")
        assert (decision.allowed, decision.remaining) == (allowed, remaining)
        assert decision.retry_after == pytest.approx(retry_after)


def test_rejections_are_counted_per_table() -> None:
    table = TokenBucketTable(rate=1.0, burst=1, max_keys=10, clock=FakeClock())
    results = [table.take("a").allowed for _ in range(4)]
    assert results == [True, False, False, False]
    assert table.rejected_total == 3


def test_keys_have_independent_buckets() -> None:
    table = TokenBucketTable(rate=1.0, burst=1, max_keys=10, clock=FakeClock())
    assert table.take("a").allowed
    assert not table.take("a").allowed
    assert table.take("b").allowed


def test_table_is_bounded_and_evicts_least_recently_used() -> None:
    clock = FakeClock()
    table = TokenBucketTable(rate=1.0, burst=1, max_keys=2, clock=clock)
    assert table.take("a").allowed
    assert table.take("b").allowed
    assert not table.take("a").allowed  # "a" is now the most recently used
    assert table.take("c").allowed  # evicts "b", the least recently used
    assert len(table) == 2
    assert table.evicted_total == 1
    assert not table.take("a").allowed  # "a" survived eviction with its empty bucket
    assert table.take("b").allowed  # "b" came back with a full bucket


def test_reset_is_time_to_full_bucket() -> None:
    table = TokenBucketTable(rate=4.0, burst=8, max_keys=10, clock=FakeClock())
    decision = table.take("k")
    assert decision.reset == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(0.0, 0, id="zero"),
        pytest.param(0.01, 1, id="fraction-rounds-up"),
        pytest.param(1.0, 1, id="whole"),
        pytest.param(0.1 * 30, 3, id="float-noise-absorbed"),
        pytest.param(2.5, 3, id="half"),
    ],
)
def test_header_seconds_rounds_up(seconds: float, expected: int) -> None:
    assert header_seconds(seconds) == expected


@pytest.mark.parametrize(
    ("rate", "burst", "max_keys"),
    [
        pytest.param(0.0, 1, 1, id="zero-rate"),
        pytest.param(1.0, 0, 1, id="zero-burst"),
        pytest.param(1.0, 1, 0, id="zero-keys"),
    ],
)
def test_invalid_table_settings_refused(rate: float, burst: int, max_keys: int) -> None:
    with pytest.raises(ValueError):
        TokenBucketTable(rate=rate, burst=burst, max_keys=max_keys, clock=FakeClock())
