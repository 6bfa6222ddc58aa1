"""Request ids and W3C trace-context propagation (aiohttp adapter over ``trace_core``).

The request id is kept when the client sent a sane one, generated otherwise; it is stored in
``request["hexagon.request_id"]``, forwarded upstream and echoed on the response. The upstream
hop gets a ``traceparent`` with the caller's trace id and a fresh parent id (a new trace when the
incoming one is absent or invalid) and the caller's ``tracestate`` when its traceparent was
valid. Changing headers means handing the inner handler a ``request.clone()``: aiohttp request
headers are immutable, and the proxy forwards ``request.headers``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from ._http import finish, response_hooks
from .schemas import OptionError
from .trace_core import new_request_id, next_hop, parse_traceparent, valid_request_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_KEY = "hexagon.request_id"
TRACEPARENT_KEY = "hexagon.traceparent"


class RequestId:
    kind = "requestId"

    def __init__(self, *, header: str = "X-Request-Id", trust_incoming: bool = True) -> None:
        if not header or any(ch in header for ch in " :\t\r\n"):
            raise OptionError("header", header, "an HTTP header name")
        self.header = header
        self.trust_incoming = trust_incoming
        self.generated_total = 0

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        request_id = headers.get(self.header) if self.trust_incoming else None
        if request_id is None or not valid_request_id(request_id):
            request_id = new_request_id()
            self.generated_total += 1
        incoming = parse_traceparent(headers.get("traceparent"))
        upstream_trace = next_hop(incoming)
        request[REQUEST_ID_KEY] = request_id
        request[TRACEPARENT_KEY] = upstream_trace.header()
        response_hooks(request).headers.append((self.header, request_id))

        forwarded = CIMultiDict(headers)
        forwarded[self.header] = request_id
        forwarded["traceparent"] = upstream_trace.header()
        if incoming is None:
            # The spec forbids passing on a tracestate whose traceparent we could not parse.
            forwarded.popall("tracestate", None)
        try:
            inner = request.clone(headers=forwarded)
        except RuntimeError:
            # Someone read the body already (clone refuses then): serve without rewriting
            # upstream headers rather than failing the request.
            inner = request
        try:
            response = await handler(inner)
        except web.HTTPException as exc:
            finish(request, exc)
            raise
        finally:
            if inner is not request:
                _copy_back(inner, request)
        return finish(request, response)

    def metrics(self) -> dict[str, float]:
        return {"requestid_generated_total": float(self.generated_total)}


def _copy_back(inner: web.Request, outer: web.Request) -> None:
    """Keys set on the clone by inner middlewares (say ``hexagon.upstream`` from canary) become
    visible to outer middlewares and to the core, which only hold the original request."""
    for key in inner:
        if isinstance(key, str) and key.startswith("hexagon."):
            outer[key] = inner[key]
