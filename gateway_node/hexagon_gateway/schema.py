"""The gateway config's JSON Schema (draft 2020-12), kept as data so it can be published.

It lives apart from `config.py` because the schema is the contract the operator renders against:
`config.schema.json` next to this module is generated from `schema_document()` (a golden test
keeps the two identical), and middleware option schemas are merged in from the middlewares
package so that one validation pass covers the whole document.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("config.schema.json")

_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_MS = {"type": "integer", "minimum": 1, "maximum": 3_600_000}


def _obj(props: dict[str, Any], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


# Port 0 binds any free port (tests, local runs); the chart always sets real ones.
_LISTEN = _obj(
    {"host": {"type": "string", "minLength": 1}, "port": {**_PORT, "minimum": 0}},
    required=("port",),
)
_TIMEOUTS = _obj({"connectMs": _MS, "firstByteMs": _MS, "totalMs": _MS})
_ENDPOINT = _obj(
    {
        "address": {
            "type": "string",
            "pattern": r"^[^\s:/]+:[0-9]{1,5}$|^\[[0-9a-fA-F:.]+\]:[0-9]{1,5}$",
        },
        "name": {"type": "string", "minLength": 1},
        "weight": {"type": "integer", "minimum": 0, "maximum": 100},
        "zone": {"type": "string"},
        "ring": {"type": "integer", "minimum": 0, "maximum": 2},
    },
    required=("address",),
)
_UPSTREAM = _obj(
    {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
        "endpoints": {"type": "array", "items": _ENDPOINT},
        "loadBalancer": {"enum": ["leastRequest", "roundRobin"]},
        "outlierDetection": _obj(
            {
                "consecutive5xx": {"type": "integer", "minimum": 0},
                "consecutiveConnectFailures": {"type": "integer", "minimum": 0},
                "baseEjectionMs": _MS,
                "maxEjectionPercent": {"type": "integer", "minimum": 0, "maximum": 100},
            }
        ),
        "retries": _obj(
            {
                "attempts": {"type": "integer", "minimum": 0, "maximum": 10},
                "budgetPercent": {"type": "number", "minimum": 0, "maximum": 100},
                "retryOn": {
                    "type": "array",
                    "items": {"enum": ["connect-failure", "5xx", "gateway-error", "reset"]},
                },
            }
        ),
        "timeouts": _TIMEOUTS,
    },
    required=("name", "endpoints"),
)
_HEADER_MATCH = _obj(
    {
        "name": {"type": "string", "minLength": 1},
        "value": {"type": "string"},
        "regex": {"type": "string"},
    },
    required=("name",),
)
_METHODS = {
    "type": "array",
    "items": {"enum": ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]},
}


def _middleware_item(middleware_schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": sorted(middleware_schemas)}},
    }
    branches = []
    for name in sorted(middleware_schemas):
        options = copy.deepcopy(dict(middleware_schemas[name]))
        # The options schema describes the options; `type` is ours, so let it through.
        if isinstance(options.get("properties"), dict):
            options["properties"].setdefault("type", {"const": name})
        branches.append(
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": options,
            }
        )
    if branches:
        item["allOf"] = branches
    return item


def schema_document(middleware_schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return the complete JSON Schema of a gateway config document."""
    route = _obj(
        {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
            "match": _obj(
                {
                    "pathPrefix": {"type": "string", "pattern": "^/"},
                    "path": {"type": "string", "pattern": "^/"},
                    "regex": {"type": "string", "minLength": 1},
                    "methods": _METHODS,
                    "headers": {"type": "array", "items": _HEADER_MATCH},
                }
            ),
            "upstream": {"type": "string", "minLength": 1},
            "timeouts": _TIMEOUTS,
            "maxBodyBytes": {"type": "integer", "minimum": 0},
            "stripPrefix": {"type": "boolean"},
            "middlewares": {"type": "array", "items": _middleware_item(middleware_schemas)},
        },
        required=("name", "match", "upstream"),
    )
    doc = _obj(
        {
            "version": {"const": 1},
            "node": _obj(
                {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "topology": {"type": "string"},
                    "spoke": {"type": "string"},
                    "ring": {"type": "integer", "minimum": 0, "maximum": 2},
                }
            ),
            "listen": _obj({"data": _LISTEN, "admin": _LISTEN}),
            "workers": {"type": "integer", "minimum": 1, "maximum": 64},
            "admin": _obj(
                {"tokenFile": {"type": "string", "minLength": 1}, "tokenEnv": {"type": "string"}}
            ),
            "trustedProxies": {"type": "array", "items": {"type": "string"}},
            "limits": _obj(
                {
                    "maxBodyBytes": {"type": "integer", "minimum": 0},
                    "maxHeaderBytes": {"type": "integer", "minimum": 1024, "maximum": 1048576},
                }
            ),
            "weights": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100},
            },
            "upstreams": {"type": "array", "items": _UPSTREAM},
            "routes": {"type": "array", "items": route},
        },
        required=("version",),
    )
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["$id"] = "https://hexagon.dev/schemas/gateway-config.json"
    doc["title"] = "Hexagon gateway config"
    return doc


def render_schema(middleware_schemas: Mapping[str, Mapping[str, Any]]) -> str:
    """The published file's exact text."""
    return json.dumps(schema_document(middleware_schemas), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # regenerate the published file: python -m hexagon_gateway.schema
    from hexagon_gateway.config import MIDDLEWARE_SCHEMAS

    SCHEMA_PATH.write_text(render_schema(MIDDLEWARE_SCHEMAS), encoding="utf-8")
