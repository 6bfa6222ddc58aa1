"""Test helpers around the CRD file: load it and apply its structural defaults like the API
server does, so unit tests see specs exactly as the operator receives them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = ROOT / "crds" / "hexagonnodes.hexagon.dev.yaml"
EXAMPLES = ROOT / "crds" / "examples"


def load_crd() -> dict[str, Any]:
    doc = yaml.safe_load(CRD_PATH.read_text())
    assert isinstance(doc, dict)
    return doc


def version_schema(crd: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = (crd or load_crd())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Structural defaulting: absent properties with a default get it, recursively (defaults
    themselves are defaulted too, as the API server does)."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for key, sub in schema["properties"].items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(out[key], sub)
        return out
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def defaulted_spec(spec: dict[str, Any]) -> dict[str, Any]:
    result = apply_defaults(spec, version_schema()["properties"]["spec"])
    assert isinstance(result, dict)
    return result


def example_nodes(filename: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / filename).read_text()) if d]
    return docs
