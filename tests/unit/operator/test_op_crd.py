"""Offline checks of the CRD file: what the API server cannot tell us about our own schema.

Every field is described and (outside the status and documented exceptions) defaulted; every
list and string reachable by CEL is bounded so the API server can bound the rule cost; the
examples are valid; and the gateway config rendered from them passes the gateway's own schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from hexagon_operator import api, resources

from tests.unit.operator.opcrd import (
    EXAMPLES,
    defaulted_spec,
    example_nodes,
    load_crd,
    version_schema,
)

# Fields without a default, and why: required, optional overrides whose absence means
# "inherit", or per-middleware options whose defaults belong to the gateway (a structural
# default would apply to every middleware type).
NO_DEFAULT_OK = (
    ".spec.topology",
    ".spec.spoke",
    ".spec.gateway.upstreams[].name",
    ".spec.gateway.upstreams[].endpoints",
    ".spec.gateway.upstreams[].endpoints[].address",
    ".spec.gateway.upstreams[].endpoints[].name",
    ".spec.gateway.routes[].name",
    ".spec.gateway.routes[].match",
    ".spec.gateway.routes[].match.pathPrefix",
    ".spec.gateway.routes[].match.path",
    ".spec.gateway.routes[].match.regex",
    ".spec.gateway.routes[].match.headers[].",
    ".spec.gateway.routes[].upstream",
    ".spec.gateway.routes[].timeouts",
    ".spec.gateway.routes[].middlewares[].",
)


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}.{key}", sub
        yield from _walk(sub, f"{path}.{key}")
    if "items" in schema:
        yield f"{path}[]", schema["items"]
        yield from _walk(schema["items"], f"{path}[]")


SPEC_STATUS = list(_walk(version_schema(), ""))


def test_identity() -> None:
    crd = load_crd()
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{api.PLURAL}.{api.GROUP}"
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        api.KIND,
        api.PLURAL,
        [api.SHORT_NAME],
        ["hexagon"],
    )
    version = crd["spec"]["versions"][0]
    assert version["name"] == api.VERSION
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Spoke", "Ring", "Replicas", "Ready", "Health", "Age"]


@pytest.mark.parametrize(("path", "node"), [pytest.param(p, n, id=p) for p, n in SPEC_STATUS])
def test_every_field_is_described(path: str, node: dict[str, Any]) -> None:
    if path in (".apiVersion", ".kind", ".metadata"):
        return
    assert node.get("description") or (path.endswith("[]") and node.get("type") != "object"), path


@pytest.mark.parametrize(
    ("path", "node"), [pytest.param(p, n, id=p) for p, n in SPEC_STATUS if p.startswith(".spec")]
)
def test_every_spec_field_has_a_default(path: str, node: dict[str, Any]) -> None:
    if path in (".spec",) or path.endswith("[]") or any(path.startswith(p) for p in NO_DEFAULT_OK):
        return
    assert "default" in node, f"{path} has no default (or add it to NO_DEFAULT_OK with a reason)"


@pytest.mark.parametrize(("path", "node"), [pytest.param(p, n, id=p) for p, n in SPEC_STATUS])
def test_lists_and_strings_are_bounded(path: str, node: dict[str, Any]) -> None:
    if node.get("type") == "array":
        assert "maxItems" in node, path
    if node.get("type") == "string" and path.startswith(".spec"):
        assert "maxLength" in node or "enum" in node, path


def _openapi_validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 keywords (boolean exclusiveMinimum) match draft 4; x-kubernetes-* are ignored.
    return jsonschema.Draft4Validator(version_schema())


@pytest.mark.parametrize(
    "node",
    [
        pytest.param(d, id=f"{f}:{d['metadata']['name']}")
        for f in sorted(p.name for p in EXAMPLES.glob("*.yaml"))
        for d in example_nodes(f)
    ],
)
def test_examples_are_valid_and_render_a_valid_gateway_config(node: dict[str, Any]) -> None:
    node = {**node, "spec": defaulted_spec(node["spec"])}
    _openapi_validator().validate(node)
    spec = api.parse_spec(node["spec"])
    ref = api.NodeRef(name=node["metadata"]["name"], namespace="default", uid="u")
    doc = resources.render_config(ref, spec, weights={"x-0": 0})
    gateway_schema = pytest.importorskip("hexagon_gateway.schema")
    middlewares = pytest.importorskip("hexagon_gateway.middlewares")
    schema = gateway_schema.schema_document(middlewares.MIDDLEWARE_SCHEMAS)
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_example_hexagon_has_one_node_per_spoke() -> None:
    nodes = example_nodes("hexagon.yaml")
    assert sorted(n["spec"]["spoke"] for n in nodes) == sorted(api.SPOKES)
    assert {n["spec"]["topology"] for n in nodes} == {"demo"}
