"""Pure route matching: request (method, path, headers) -> the most specific route.

Specificity, from most to least specific:
  1. exact paths (`match.path`);
  2. path prefixes, deepest first, found by walking a trie of path segments (so `/api` matches
     `/api` and `/api/x` but never `/apix`, and lookup cost depends on the path's depth, not on
     the number of routes);
  3. regexes, in config order;
  4. the root prefix `/`, the catch-all.
Among routes with the same path specificity, those with more constraints (methods, headers)
are tried first, then config order. A route whose method or headers do not match is skipped in
favour of the next candidate. No aiohttp here: the table is built once per config and tested
exhaustively with plain tuples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RouteSpec(Generic[T]):
    """What the table needs to know about a route; `target` is returned on a match."""

    target: T
    path_prefix: str | None = None
    path: str | None = None
    regex: str | None = None
    methods: frozenset[str] | None = None
    headers: tuple[tuple[str, str | None, str | None], ...] = ()  # (lower name, value, regex)


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    target: T
    prefix: str  # the matched prefix, for stripPrefix ("" unless a prefix route matched)


@dataclass(slots=True)
class _Candidate(Generic[T]):
    spec: RouteSpec[T]
    order: int
    methods: frozenset[str] | None
    headers: tuple[tuple[str, str | None, re.Pattern[str] | None], ...]
    prefix: str = ""
    result: Match[T] | None = None  # built once: matching allocates nothing

    @property
    def constraints(self) -> int:
        return (self.methods is not None) + len(self.headers)

    def accepts(self, method: str, get_header: Callable[[str], str | None]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if not self.headers:
            return True
        for name, value, pattern in self.headers:
            got = get_header(name)
            if got is None:
                return False
            if value is not None and got != value:
                return False
            if pattern is not None and pattern.fullmatch(got) is None:
                return False
        return True


@dataclass(slots=True)
class _Node(Generic[T]):
    children: dict[str, _Node[T]] = field(default_factory=dict)
    routes: list[_Candidate[T]] = field(default_factory=list)


def split_segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def normalize_path(path: str) -> str | None:
    """Remove `.` and `..` segments (RFC 3986 5.2.4); None when `..` climbs above the root.

    Matching and forwarding use the same normalized path, so `/public/../admin` can never be
    routed as `/public` and then served as `/admin` by the upstream.
    """
    if "/." not in path:
        return path
    out: list[str] = []
    parts = path.split("/")
    for part in parts[1:]:
        if part == ".":
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
    if parts[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


def _ordered(cands: list[_Candidate[T]]) -> list[_Candidate[T]]:
    return sorted(cands, key=lambda c: (-c.constraints, c.order))


class RouteTable(Generic[T]):
    """Immutable once built; `match` is the hot path."""

    def __init__(self, specs: Sequence[RouteSpec[T]]) -> None:
        self._exact: dict[str, list[_Candidate[T]]] = {}
        self._root: _Node[T] = _Node()
        self._catch_all: list[_Candidate[T]] = []
        regex: list[tuple[re.Pattern[str], _Candidate[T]]] = []
        for order, spec in enumerate(specs):
            cand = _Candidate(
                spec=spec,
                order=order,
                methods=spec.methods,
                headers=tuple(
                    (n.lower(), v, re.compile(r) if r is not None else None)
                    for n, v, r in spec.headers
                ),
            )
            if spec.path is not None:
                self._exact.setdefault(spec.path, []).append(cand)
            elif spec.regex is not None:
                regex.append((re.compile(spec.regex), cand))
            elif spec.path_prefix is not None:
                segments = split_segments(spec.path_prefix)
                cand.prefix = "/" + "/".join(segments) if segments else ""
                if not segments:
                    self._catch_all.append(cand)
                    continue
                node = self._root
                for seg in segments:
                    node = node.children.setdefault(seg, _Node())
                node.routes.append(cand)
        for key, cands in self._exact.items():
            self._exact[key] = _ordered(cands)
        for cand in self._all(regex):
            cand.result = Match(target=cand.spec.target, prefix=cand.prefix)
        self._regex = regex
        self.uses_headers = any(spec.headers for spec in specs)
        self._catch_all = _ordered(self._catch_all)
        self._sort(self._root)

    def _all(self, regex: list[tuple[re.Pattern[str], _Candidate[T]]]) -> list[_Candidate[T]]:
        out = [c for cands in self._exact.values() for c in cands]
        out += [c for _, c in regex] + self._catch_all
        stack = [self._root]
        while stack:
            node = stack.pop()
            out += node.routes
            stack.extend(node.children.values())
        return out

    def _sort(self, node: _Node[T]) -> None:
        node.routes = _ordered(node.routes)
        for child in node.children.values():
            self._sort(child)

    def candidates(self, path: str) -> Iterable[_Candidate[T]]:
        """Every route whose path part matches, most specific first."""
        exact = self._exact.get(path)
        if exact:
            yield from exact
        levels: list[list[_Candidate[T]]] = []
        node = self._root
        for seg in split_segments(path):
            nxt = node.children.get(seg)
            if nxt is None:
                break
            node = nxt
            if node.routes:
                levels.append(node.routes)
        for routes in reversed(levels):
            yield from routes
        for pattern, cand in self._regex:
            if pattern.fullmatch(path) is not None:
                yield cand
        yield from self._catch_all

    def match(
        self, method: str, path: str, get_header: Callable[[str], str | None]
    ) -> Match[T] | None:
        # The hot path: the same order as candidates(), without a generator.
        exact = self._exact.get(path)
        if exact:
            for cand in exact:
                if cand.accepts(method, get_header):
                    return cand.result
        node = self._root
        levels: list[list[_Candidate[T]]] | None = None
        if node.children:
            for seg in path.split("/"):
                if not seg:
                    continue
                nxt = node.children.get(seg)
                if nxt is None:
                    break
                node = nxt
                if node.routes:
                    if levels is None:
                        levels = []
                    levels.append(node.routes)
        if levels:
            for routes in reversed(levels):
                for cand in routes:
                    if cand.accepts(method, get_header):
                        return cand.result
        for pattern, cand in self._regex:
            if pattern.fullmatch(path) is not None and cand.accepts(method, get_header):
                return cand.result
        for cand in self._catch_all:
            if cand.accepts(method, get_header):
                return cand.result
        return None


def header_lookup(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    """Adapter for plain dicts (tests); real requests pass their own case-insensitive getter."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get


def strip_prefix(path: str, prefix: str) -> str:
    rest = path[len(prefix) :] if prefix and path.startswith(prefix) else path
    return rest if rest.startswith("/") else "/" + rest
