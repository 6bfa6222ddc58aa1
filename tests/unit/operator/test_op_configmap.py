"""Which config changes restart pods (config-hash) and which are pushed (revision only)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml
from hexagon_operator import api
from hexagon_operator.resources.configmap import (
    config_hash,
    config_revision,
    dump_config,
    render_config,
)

REF = api.NodeRef(name="n", namespace="ns", uid="u")
BASE = api.parse_spec({"topology": "t", "spoke": "south"})
ROUTED = replace(
    BASE,
    gateway=api.GatewaySpec(
        upstreams=({"name": "u", "endpoints": [{"address": "a:1"}]},),
        routes=({"name": "r", "match": {"pathPrefix": "/"}, "upstream": "u"},),
    ),
)


def _doc(spec: api.NodeSpec, **kw: Any) -> dict[str, Any]:
    return render_config(REF, spec, **kw)


@pytest.mark.parametrize(
    ("changed", "restart"),
    [
        pytest.param(_doc(ROUTED), False, id="routes-hot-reload"),
        pytest.param(_doc(BASE, weights={"n-0": 0}), False, id="weights-hot-reload"),
        pytest.param(
            _doc(replace(BASE, gateway=api.GatewaySpec(trusted_proxies=("10.0.0.0/8",)))),
            False,
            id="trusted-proxies-hot-reload",
        ),
        pytest.param(_doc(replace(BASE, workers=2)), True, id="workers-restart"),
        pytest.param(_doc(replace(BASE, ring_level=2)), True, id="identity-restart"),
    ],
)
def test_hash_moves_only_for_restart_config(changed: dict[str, Any], restart: bool) -> None:
    base = _doc(BASE)
    assert (config_hash(changed) != config_hash(base)) is restart
    assert config_revision(changed) != config_revision(base)


def test_rendered_document_shape() -> None:
    doc = yaml.safe_load(dump_config(_doc(ROUTED, weights={"n-1": 0, "n-0": 50})))
    assert doc["version"] == 1
    assert doc["node"] == {"name": "n", "namespace": "ns", "topology": "t", "spoke": "south",
                           "ring": 1}  # fmt: skip
    assert doc["listen"]["data"]["port"] == 8080 and doc["listen"]["admin"]["port"] == 9901
    assert doc["admin"] == {"tokenFile": "/var/run/hexagon/token"}
    assert list(doc["weights"]) == ["n-0", "n-1"]
    assert doc["routes"][0]["upstream"] == "u"


def test_dump_is_stable() -> None:
    assert dump_config(_doc(ROUTED)) == dump_config(_doc(ROUTED))
