"""Golden tests for every builder: rendered objects are compared with files in tests/golden/.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/unit/operator`` and
review the diff; without it, any difference fails the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hexagon_operator import api, resources
from hexagon_operator.config import Settings
from hexagon_operator.resources.configmap import config_hash

from tests.unit.operator.opcrd import ROOT, defaulted_spec, example_nodes

GOLDEN = ROOT / "tests" / "golden"
SETTINGS = Settings(gateway_image="hexagon/gateway:dev")
NODE = api.NodeRef(name="demo-southeast", namespace="hexagon", uid="0b5e-uid", generation=3)


def _spec(case: str) -> api.NodeSpec:
    if case == "minimal":
        return api.parse_spec(defaulted_spec({"topology": "solo", "spoke": "north"}))
    if case == "full":
        raw = next(d for d in example_nodes("hexagon.yaml") if d["spec"]["spoke"] == "southeast")
        spec = dict(raw["spec"])
        spec["resources"] = {"limits": {"cpu": "1"}}
        spec["image"] = "registry.local/hexagon/gateway:1.2.3"
        return api.parse_spec(defaulted_spec(spec))
    raise AssertionError(case)


def _doc(spec: api.NodeSpec) -> dict[str, Any]:
    return resources.render_config(NODE, spec, weights={"demo-southeast-1": 0})


BUILDERS: dict[str, Callable[[api.NodeSpec], dict[str, Any]]] = {
    "statefulset-heal-zero": lambda s: resources.build_statefulset(
        NODE, s, settings=SETTINGS, config_hash=config_hash(_doc(s)), heal_epoch="3", replicas=0
    ),
    "statefulset": lambda s: resources.build_statefulset(
        NODE, s, settings=SETTINGS, config_hash=config_hash(_doc(s)), heal_epoch="2"
    ),
    "service-headless": lambda s: resources.build_headless_service(NODE, s),
    "service-client": lambda s: resources.build_client_service(NODE, s),
    "configmap": lambda s: resources.build_configmap(NODE, s, doc=_doc(s)),
    "pdb": lambda s: resources.build_pdb(NODE, s),
    "secret": lambda s: resources.build_admin_secret(NODE, s, token="not-a-real-token"),
}


@pytest.mark.parametrize("case", ["minimal", "full"])
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_builder_matches_golden(builder: str, case: str) -> None:
    rendered = yaml.safe_dump(BUILDERS[builder](_spec(case)), sort_keys=False)
    path: Path = GOLDEN / f"{builder}-{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(rendered)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review it"
    assert rendered == path.read_text(), f"{path.name} differs; UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_builder_is_deterministic(builder: str) -> None:
    spec = _spec("full")
    assert BUILDERS[builder](spec) == BUILDERS[builder](spec)
