"""Route table: specificity order, segment-boundary prefixes, methods, headers, regexes."""

from __future__ import annotations

import pytest
from hexagon_gateway.routing import (
    RouteSpec,
    RouteTable,
    header_lookup,
    normalize_path,
    strip_prefix,
)

TABLE: list[RouteSpec[str]] = [
    RouteSpec("root", path_prefix="/"),
    RouteSpec("api", path_prefix="/api"),
    RouteSpec("api-users", path_prefix="/api/users/"),
    RouteSpec("api-users-post", path_prefix="/api/users", methods=frozenset({"POST"})),
    RouteSpec("health-exact", path="/api/health"),
    RouteSpec("canary-header", path_prefix="/api/users", headers=(("X-Env", "canary", None),)),
    RouteSpec("regex-v", regex=r"/v[0-9]+/items/[0-9]+"),
    RouteSpec("tenant-regex-header", path_prefix="/t", headers=(("x-tenant", None, r"[a-z]+"),)),
    RouteSpec("static", path_prefix="/static", methods=frozenset({"GET", "HEAD"})),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected", "prefix"),
    [
        pytest.param("GET", "/", {}, "root", "", id="root-catch-all"),
        pytest.param("GET", "/unknown/deep", {}, "root", "", id="catch-all-deep"),
        pytest.param("GET", "/api", {}, "api", "/api", id="prefix-exact-boundary"),
        pytest.param("GET", "/api/", {}, "api", "/api", id="prefix-trailing-slash"),
        pytest.param("GET", "/apix", {}, "root", "", id="prefix-not-substring"),
        pytest.param("GET", "/api/orders/1", {}, "api", "/api", id="prefix-child"),
        pytest.param("GET", "/api/users/7", {}, "api-users", "/api/users", id="deeper-prefix-wins"),
        pytest.param(
            "POST", "/api/users/7", {}, "api-users-post", "/api/users", id="method-more-specific"
        ),
        pytest.param(
            "GET",
            "/api/users",
            {"X-ENV": "canary"},
            "canary-header",
            "/api/users",
            id="header-value-case-insensitive-name",
        ),
        pytest.param(
            "GET",
            "/api/users",
            {"x-env": "prod"},
            "api-users",
            "/api/users",
            id="header-value-mismatch-falls-back",
        ),
        pytest.param("GET", "/api/health", {}, "health-exact", "", id="exact-beats-prefix"),
        pytest.param("GET", "/api/health/x", {}, "api", "/api", id="exact-is-exact"),
        pytest.param("GET", "/v2/items/42", {}, "regex-v", "", id="regex-beats-root"),
        pytest.param("GET", "/v2/items/42/x", {}, "root", "", id="regex-is-anchored"),
        pytest.param(
            "GET", "/t/a", {"x-tenant": "acme"}, "tenant-regex-header", "/t", id="header-regex"
        ),
        pytest.param("GET", "/t/a", {"x-tenant": "ACME1"}, "root", "", id="header-regex-mismatch"),
        pytest.param("GET", "/t/a", {}, "root", "", id="header-missing"),
        pytest.param("DELETE", "/static/a.css", {}, "root", "", id="method-mismatch-falls-back"),
        pytest.param("HEAD", "/static/a.css", {}, "static", "/static", id="method-match"),
    ],
)
def test_most_specific_route_wins(
    method: str, path: str, headers: dict[str, str], expected: str, prefix: str
) -> None:
    match = RouteTable(TABLE).match(method, path, header_lookup(headers))
    assert match is not None
    assert (match.target, match.prefix) == (expected, prefix)


def test_no_match_without_catch_all() -> None:
    table = RouteTable([RouteSpec("api", path_prefix="/api")])
    assert table.match("GET", "/other", header_lookup({})) is None


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param("a", "b", "a", id="config-order-breaks-ties"),
    ],
)
def test_config_order_breaks_ties(first: str, second: str, expected: str) -> None:
    table = RouteTable([RouteSpec(first, path_prefix="/x"), RouteSpec(second, path_prefix="/x")])
    match = table.match("GET", "/x/1", header_lookup({}))
    assert match is not None and match.target == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/a/b", "/a/b", id="plain"),
        pytest.param("/a/./b", "/a/b", id="dot"),
        pytest.param("/a/../b", "/b", id="dotdot"),
        pytest.param("/public/../admin", "/admin", id="escape-attempt-normalized"),
        pytest.param("/a/b/..", "/a/", id="trailing-dotdot"),
        pytest.param("/..", None, id="above-root"),
        pytest.param("/a/../../b", None, id="above-root-deep"),
        pytest.param("/a/.hidden", "/a/.hidden", id="dotfile-kept"),
    ],
)
def test_normalize_path(path: str, expected: str | None) -> None:
    assert normalize_path(path) == expected


@pytest.mark.parametrize(
    ("path", "prefix", "expected"),
    [
        pytest.param("/api/users", "/api", "/users", id="strip"),
        pytest.param("/api", "/api", "/", id="strip-to-root"),
        pytest.param("/users", "", "/users", id="no-prefix"),
    ],
)
def test_strip_prefix(path: str, prefix: str, expected: str) -> None:
    assert strip_prefix(path, prefix) == expected
