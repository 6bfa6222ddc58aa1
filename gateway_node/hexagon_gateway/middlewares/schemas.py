"""JSON schemas of every middleware's options, and config errors users can act on.

The gateway's config validator embeds ``MIDDLEWARE_SCHEMAS`` in its published schema, and
``build_chain`` validates with the same schemas before building anything, so the two can never
disagree. Errors name the field, the offending value and what was expected, e.g.
``routes[api].middlewares[1].burst: got 0, expected an integer >= 1``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from .jwt_core import ASYMMETRIC_ALGORITHMS, SYMMETRIC_ALGORITHMS

# RFC 9110 token characters: what a header name may contain.
HEADER_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_NAME = {"type": "string", "pattern": f"^{HEADER_NAME}$", "maxLength": 256}
_MATCH = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "value"],
    "properties": {"name": _NAME, "value": {"type": "string", "maxLength": 4096}},
}


def _obj(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", *required],
        "properties": dict(properties),
    }


MIDDLEWARE_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "requestId": _obj(
        {
            "type": {"const": "requestId"},
            "header": _NAME,
            "trustIncoming": {"type": "boolean"},
        }
    ),
    "jwt": _obj(
        {
            "type": {"const": "jwt"},
            "issuer": {"type": "string", "minLength": 1},
            "audiences": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "algorithms": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"enum": [*ASYMMETRIC_ALGORITHMS, *SYMMETRIC_ALGORITHMS]},
            },
            "jwksFile": {"type": "string", "minLength": 1},
            "jwksUrl": {"type": "string", "pattern": "^https?://[^\\s]+$"},
            "secret": {"type": "string", "minLength": 32},
            "secretFile": {"type": "string", "minLength": 1},
            "leewaySeconds": {"type": "number", "minimum": 0, "maximum": 300},
            "jwksCacheSeconds": {"type": "number", "minimum": 1},
            "jwksMinRefreshSeconds": {"type": "number", "minimum": 0},
            "jwksFetchTimeoutSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
            "dpop": {"type": "boolean"},
            "dpopMaxAgeSeconds": {"type": "number", "minimum": 1, "maximum": 3600},
        },
        ("algorithms",),
    ),
    "rateLimit": _obj(
        {
            "type": {"const": "rateLimit"},
            "requestsPerSecond": {"type": "number", "exclusiveMinimum": 0},
            "burst": {"type": "integer", "minimum": 1},
            "key": {"type": "string", "pattern": f"^(client|route|header:{HEADER_NAME})$"},
            "maxKeys": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
        },
        ("requestsPerSecond",),
    ),
    "circuitBreaker": _obj(
        {
            "type": {"const": "circuitBreaker"},
            "maxConcurrent": {"type": "integer", "minimum": 1},
            "p99Ms": {"type": "number", "exclusiveMinimum": 0},
            "windowSeconds": {"type": "number", "minimum": 1, "maximum": 3600},
            "minRequests": {"type": "integer", "minimum": 1},
            "openSeconds": {"type": "number", "exclusiveMinimum": 0},
            "maxOpenSeconds": {"type": "number", "exclusiveMinimum": 0},
            "halfOpenRequests": {"type": "integer", "minimum": 1},
            "errorPercent": {"type": "number", "minimum": 0, "maximum": 100},
        },
        ("maxConcurrent", "p99Ms"),
    ),
    "canary": _obj(
        {
            "type": {"const": "canary"},
            "upstream": {"type": "string", "minLength": 1},
            "weight": {"type": "number", "minimum": 0, "maximum": 100},
            "header": _MATCH,
            "cookie": _MATCH,
            "stickyKey": {
                "type": "string",
                "pattern": f"^(client|header:{HEADER_NAME}|cookie:[^\\s;=]+)$",
            },
        },
        ("upstream",),
    ),
}

_VALIDATORS = {name: Draft202012Validator(schema) for name, schema in MIDDLEWARE_SCHEMAS.items()}


MISSING: Any = type("Missing", (), {"__repr__": lambda self: "nothing"})()
# Values of these fields never appear in error messages: config errors end up in logs.
_SECRET_FIELDS = frozenset({"secret"})


class OptionError(ValueError):
    """A bad option, before its location in the config is known (``build_chain`` adds it)."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        shown = "<redacted>" if field.rsplit(".", 1)[-1] in _SECRET_FIELDS else repr(value)
        super().__init__(f"{field}: got {shown}, expected {expected}")
        self.field = field
        self.shown = shown
        self.expected = expected

    def at(self, prefix: str) -> ValueError:
        field = f"{prefix}.{self.field}" if self.field else prefix
        return ValueError(f"{field}: got {self.shown}, expected {self.expected}")


def _expected(error: ValidationError) -> str:
    kind, arg = error.validator, error.validator_value
    simple = {
        "type": f"a value of type {arg}",
        "enum": f"one of {arg}",
        "const": repr(arg),
        "minimum": f"a number >= {arg}",
        "maximum": f"a number <= {arg}",
        "exclusiveMinimum": f"a number > {arg}",
        "minLength": f"a string of at least {arg} characters",
        "maxLength": f"a string of at most {arg} characters",
        "minItems": f"at least {arg} item(s)",
        "uniqueItems": "unique items",
        "pattern": f"a string matching {arg}",
    }
    if kind == "minimum" and isinstance(error.instance, int) and isinstance(arg, int):
        return f"an integer >= {arg}"
    return simple.get(str(kind), error.message)


def check_schema(type_name: str, options: Mapping[str, Any]) -> None:
    """Raise OptionError for the most relevant schema violation of ``options``."""
    error = best_match(_VALIDATORS[type_name].iter_errors(dict(options)))
    if error is None:
        return
    field = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
    ).lstrip(".")
    if error.validator == "required":
        missing = re.search(r"'([^']+)' is a required property", error.message)
        name = missing.group(1) if missing else "?"
        raise OptionError(f"{field}.{name}".lstrip("."), MISSING, "a value (required)")
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        name = extra[0] if extra else "?"
        raise OptionError(
            f"{field}.{name}".lstrip("."), error.instance.get(name), f"one of the fields {known}"
        )
    raise OptionError(field, error.instance, _expected(error))
