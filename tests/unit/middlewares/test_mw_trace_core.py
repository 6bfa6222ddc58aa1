"""W3C traceparent parsing and propagation, and request-id validation."""

from __future__ import annotations

import pytest
from hexagon_gateway.middlewares.trace_core import (
    TraceParent,
    new_request_id,
    next_hop,
    parse_traceparent,
    valid_request_id,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(VALID, TraceParent("00", TRACE, SPAN, "01"), id="spec-example"),
        pytest.param(f" {VALID}\t", TraceParent("00", TRACE, SPAN, "01"), id="ows-trimmed"),
        pytest.param(f"00-{TRACE}-{SPAN}-00", TraceParent("00", TRACE, SPAN, "00"), id="unsampled"),
        pytest.param(
            f"cc-{TRACE}-{SPAN}-01-what-the-future-holds",
            TraceParent("cc", TRACE, SPAN, "01"),
            id="future-version-extra-fields",
        ),
        pytest.param(f"cc-{TRACE}-{SPAN}-01", TraceParent("cc", TRACE, SPAN, "01"), id="future-v"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param(f"ff-{TRACE}-{SPAN}-01", None, id="version-ff-forbidden"),
        pytest.param(f"00-{TRACE}-{SPAN}-01-extra", None, id="v00-with-extra"),
        pytest.param(f"cc-{TRACE}-{SPAN}-01x", None, id="future-v-bad-separator"),
        pytest.param(f"00-{'0' * 32}-{SPAN}-01", None, id="zero-trace-id"),
        pytest.param(f"00-{TRACE}-{'0' * 16}-01", None, id="zero-parent-id"),
        pytest.param(f"00-{TRACE.upper()}-{SPAN}-01", None, id="uppercase-hex"),
        pytest.param(f"00-{TRACE}-{SPAN}-0g", None, id="bad-flags"),
        pytest.param(f"0x-{TRACE}-{SPAN}-01", None, id="bad-version"),
        pytest.param(f"00_{TRACE}_{SPAN}_01", None, id="bad-separators"),
        pytest.param(f"00-{TRACE[:-1]}-{SPAN}-01", None, id="short-trace-id"),
        pytest.param(f"00-{TRACE}z-{SPAN}-01"[:55], None, id="non-hex-trace-id"),
    ],
)
def test_parse_traceparent(header: str | None, expected: TraceParent | None) -> None:
    assert parse_traceparent(header) == expected


def test_next_hop_keeps_trace_and_flags_with_new_parent() -> None:
    incoming = parse_traceparent(VALID)
    hop = next_hop(incoming, random_bytes=lambda n: b"\x11" * n)
    assert hop == TraceParent("00", TRACE, "1111111111111111", "01")
    assert hop.sampled


def test_next_hop_downgrades_future_versions_to_00() -> None:
    incoming = parse_traceparent(f"cc-{TRACE}-{SPAN}-01-more")
    assert next_hop(incoming).version == "00"


def test_new_trace_when_absent_is_valid_and_unsampled() -> None:
    hop = next_hop(None, random_bytes=lambda n: b"\xab" * n)
    assert hop.header() == f"00-{'ab' * 16}-{'ab' * 8}-00"
    assert parse_traceparent(hop.header()) == hop


def test_generated_ids_are_never_all_zero() -> None:
    draws = iter([b"\x00" * 16, b"\x01" * 16, b"\x00" * 8, b"\x02" * 8])
    hop = next_hop(None, random_bytes=lambda n: next(draws))
    assert hop.trace_id == "01" * 16
    assert hop.parent_id == "02" * 8


def test_real_random_hops_differ() -> None:
    incoming = parse_traceparent(VALID)
    assert next_hop(incoming).parent_id != next_hop(incoming).parent_id


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("3f2b9c1e-0000-4a1b-8c2d-123456789abc", True, id="uuid"),
        pytest.param("req_01HZX:node/a+b=", True, id="token-chars"),
        pytest.param("a" * 128, True, id="max-length"),
        pytest.param("a" * 129, False, id="too-long"),
        pytest.param("", False, id="empty"),
        pytest.param(None, False, id="absent"),
        pytest.param("has space", False, id="space"),
        pytest.param('quote"', False, id="quote"),
        pytest.param("line\nbreak", False, id="newline"),
        pytest.param("ünïcode", False, id="non-ascii"),
    ],
)
def test_valid_request_id(value: str | None, valid: bool) -> None:
    assert valid_request_id(value) is valid


def test_new_request_ids_are_valid_and_unique() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(valid_request_id(i) for i in ids)
