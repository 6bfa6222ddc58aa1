"""What counts as a valid probe answer."""

from __future__ import annotations

from typing import Any

import pytest
from hexagon_operator.health.probe import judge_probe

GOOD = {"mode": "netstack", "pid": 7, "eventLoopLagMs": 2.5, "tasks": 9, "snmp": {"Tcp": {}}}


@pytest.mark.parametrize(
    ("status", "body", "error", "ok", "needle"),
    [
        pytest.param(200, GOOD, None, True, "", id="valid"),
        pytest.param(None, None, "timed out after 10 s", False, "timed out", id="no-answer"),
        pytest.param(None, None, None, False, "no answer", id="no-answer-no-detail"),
        pytest.param(401, {"error": "unauthorized"}, None, False, "HTTP 401", id="wrong-token"),
        pytest.param(200, "<html>", None, False, "not a netstack answer", id="not-json"),
        pytest.param(200, {"mode": "other"}, None, False, "not a netstack answer", id="wrong-mode"),
        pytest.param(200, {**GOOD, "partial": True}, None, False, "partial", id="partial"),
        pytest.param(
            200, {**GOOD, "eventLoopLagMs": 4000}, None, False, "stuck", id="loop-lagging"
        ),
        pytest.param(
            200, {**GOOD, "eventLoopLagMs": True}, None, False, "without", id="lag-not-a-number"
        ),
        pytest.param(200, {"mode": "netstack"}, None, False, "without", id="lag-missing"),
    ],
)
def test_judge_probe(
    status: int | None, body: Any, error: str | None, ok: bool, needle: str
) -> None:
    result = judge_probe(status=status, body=body, error=error)
    assert result.ok is ok
    if ok:
        assert result.answer is not None and "snmp" not in result.answer
    else:
        assert result.error is not None and needle in result.error


def test_summary_keeps_only_small_fields() -> None:
    result = judge_probe(status=200, body=GOOD)
    assert result.answer == {"pid": 7, "eventLoopLagMs": 2.5, "tasks": 9}
