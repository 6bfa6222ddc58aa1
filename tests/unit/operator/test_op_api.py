"""Spec parsing: defaults equal the CRD's, and bad specs are refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest
from hexagon_operator import api

from tests.unit.operator.opcrd import defaulted_spec


def test_dataclass_defaults_equal_crd_defaults() -> None:
    minimal = {"topology": "demo", "spoke": "west"}
    assert api.parse_spec(minimal) == api.parse_spec(defaulted_spec(minimal))


@pytest.mark.parametrize(
    ("raw", "attr", "expected"),
    [
        pytest.param({"ringLevel": 0}, "ring_level", 0, id="ring-centre"),
        pytest.param({"replicas": 0}, "replicas", 0, id="scaled-to-zero"),
        pytest.param({"image": "x:1"}, "image", "x:1", id="image"),
        pytest.param(
            {"selfHeal": {"probeTimeoutMs": 900, "probeDeadlineSeconds": 1}},
            "self_heal",
            api.SelfHealSpec(probe_timeout_ms=900, probe_deadline_seconds=1),
            id="probe-timeout-below-deadline",
        ),
        pytest.param({"slo": {"p99Ms": 100}}, "slo", api.SloSpec(p99_ms=100), id="slo"),
        pytest.param(
            {"resources": {"limits": {"cpu": "2"}}},
            "resources",
            api.Resources(limits_cpu="2"),
            id="cpu-limit-others-default",
        ),
        pytest.param(
            {"gateway": {"trustedProxies": ["10.0.0.0/8"]}},
            "gateway",
            api.GatewaySpec(trusted_proxies=("10.0.0.0/8",)),
            id="trusted-proxies",
        ),
    ],
)
def test_parse_valid(raw: dict[str, Any], attr: str, expected: object) -> None:
    spec = api.parse_spec({"topology": "demo", "spoke": "north", **raw})
    assert getattr(spec, attr) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"spoke": "north"}, "spec.topology", id="no-topology"),
        pytest.param({"topology": "d", "spoke": "up"}, "spec.spoke: got 'up'", id="bad-spoke"),
        pytest.param(
            {"topology": "d", "spoke": "west", "ringLevel": 3}, "spec.ringLevel", id="ring-3"
        ),
        pytest.param(
            {"topology": "d", "spoke": "west", "replicas": "2"}, "spec.replicas", id="str-replicas"
        ),
        pytest.param(
            {"topology": "d", "spoke": "west", "replicas": True}, "spec.replicas", id="bool-int"
        ),
        pytest.param(
            {"topology": "d", "spoke": "west", "selfHeal": {"probeTimeoutMs": 10000}},
            "spec.selfHeal.probeTimeoutMs: got 10000",
            id="probe-timeout-at-deadline",
        ),
        pytest.param(
            {"topology": "d", "spoke": "west", "selfHeal": {"enabled": "yes"}},
            "spec.selfHeal.enabled",
            id="str-bool",
        ),
        pytest.param(
            {"topology": "d", "spoke": "west", "gateway": []}, "spec.gateway", id="gateway-list"
        ),
    ],
)
def test_parse_invalid(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(api.SpecError, match=message.replace(".", r"\.")):
        api.parse_spec(raw)


@pytest.mark.parametrize(
    ("topology", "expected"),
    [pytest.param("demo", "demo-hexagon-admin", id="demo"), pytest.param("a", "a-hexagon-admin")],
)
def test_admin_secret_name(topology: str, expected: str) -> None:
    assert api.admin_secret_name(topology) == expected


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"hexagon.dev/heal-replicas": "0"}, 0, id="zero"),
        pytest.param({"hexagon.dev/heal-replicas": " 3 "}, 3, id="spaces"),
        pytest.param({"hexagon.dev/heal-replicas": "-1"}, None, id="negative-ignored"),
        pytest.param({"hexagon.dev/heal-replicas": "x"}, None, id="garbage-ignored"),
    ],
)
def test_heal_replicas(annotations: dict[str, str], expected: int | None) -> None:
    assert api.heal_replicas(annotations) == expected
