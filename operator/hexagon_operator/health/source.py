"""The one module that talks to Prometheus: one poll -> one typed :class:`Observation`.

Why it exists: everything else in ``health`` is pure; this is the thin I/O edge. It sends
one instant query per signal (texts from ``queries``) through prometheus-api-client's
``PrometheusConnect.custom_query``, which is blocking (``requests``), so the whole poll runs
in a worker thread via ``asyncio.to_thread`` and never stalls kopf's event loop.

It never raises for Prometheus trouble: a refused connection or a timeout becomes
``prometheus-unreachable``, an HTTP error or a malformed answer ``query-failed`` naming the
signals, and a Prometheus with no gateway series ``empty``; the verdicts turn those into
``MetricsAvailable=False`` and no heal starts. Queries and values are logged at debug.

Retries are off (urllib3 ``Retry(total=0)``): the library's default retries three times
with backoff, which would hold a poll for seconds; the next poll is the retry.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from hexagon_operator.health.queries import QueryScope, build_queries, parse_vector
from hexagon_operator.health.samples import (
    Observation,
    PipelineStatus,
    PodKey,
    PodSignals,
    Signal,
)

log = logging.getLogger(__name__)

_FIELDS = {
    Signal.P99: "p99_seconds",
    Signal.ERROR_RATIO: "error_ratio",
    Signal.REQUEST_RATE: "request_rate",
    Signal.UP: "up",
    Signal.SCRAPE_AGE: "scrape_age_seconds",
}


class _Unreachable(Exception):
    """Raised inside the worker thread to stop querying a Prometheus that does not answer."""


class PrometheusSource:
    """Polls Prometheus for every watched gateway pod at once.

    ``errors`` counts failed polls by pipeline status, for the operator's own metrics.
    """

    def __init__(
        self,
        url: str,
        *,
        scope: QueryScope | None = None,
        rate_window_seconds: int = 20,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.queries = build_queries(scope or QueryScope(), rate_window_seconds=rate_window_seconds)
        self._clock = clock
        self._client = PrometheusConnect(
            url=self.url,
            headers=dict(headers) if headers else None,
            retry=Retry(total=0, raise_on_status=False),
        )
        self.errors: Counter[str] = Counter()

    def close(self) -> None:
        self._client.close()

    async def observe(self) -> Observation:
        """One poll. Never raises for Prometheus trouble; reports it in the Observation."""
        at = self._clock()
        # The per-request timeout bounds each query; this bounds the whole poll as well.
        budget = self.timeout_seconds * (len(self.queries) + 1)
        try:
            observation = await asyncio.wait_for(asyncio.to_thread(self._poll, at), budget)
        except TimeoutError:
            log.warning("prometheus poll: %s: no answer within %g s", self.url, budget)
            observation = Observation(
                at=at, status=PipelineStatus.UNREACHABLE, detail=self._unreachable_detail()
            )
        if observation.status is not PipelineStatus.OK:
            self.errors[str(observation.status)] += 1
            log.warning(
                "prometheus poll: %s %s %s",
                observation.status,
                ",".join(observation.failed),
                observation.detail,
            )
        return observation

    def _unreachable_detail(self) -> str:
        # The same words on every failed poll, whether DNS, connect or timeout failed: the
        # condition message stays put and status is not rewritten each poll (the log line
        # and the error counter carry the specifics).
        return f"{self.url} unreachable"

    def _poll(self, at: float) -> Observation:
        values: dict[Signal, dict[PodKey, float]] = {}
        failed: list[Signal] = []
        details: list[str] = []
        for signal, promql in self.queries.items():
            log.debug("prometheus query %s: %s", signal, promql)
            try:
                result = self._client.custom_query(promql, timeout=self.timeout_seconds)
            except (requests.ConnectionError, requests.Timeout) as exc:
                log.warning(
                    "prometheus poll: %s: %s: %s", self.url, type(exc).__name__, _short(exc)
                )
                return Observation(
                    at=at, status=PipelineStatus.UNREACHABLE, detail=self._unreachable_detail()
                )
            except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
                failed.append(signal)
                details.append(f"{signal}: {_short(exc)}")
                continue
            except Exception as exc:  # a library bug must not crash the operator's loop
                failed.append(signal)
                details.append(f"{signal}: {type(exc).__name__}: {_short(exc)}")
                continue
            if not isinstance(result, list):
                failed.append(signal)
                details.append(f"{signal}: unexpected answer {type(result).__name__}")
                continue
            values[signal] = parse_vector(result)
            log.debug("prometheus values %s: %s", signal, values[signal])
        if failed:
            return Observation(
                at=at,
                status=PipelineStatus.QUERY_FAILED,
                failed=tuple(failed),
                detail="; ".join(details),
            )
        return _combine(at, values)


def _combine(at: float, values: Mapping[Signal, Mapping[PodKey, float]]) -> Observation:
    keys = set().union(*(v.keys() for v in values.values())) if values else set()
    if not keys:
        return Observation(at=at, status=PipelineStatus.EMPTY, detail="no gateway series")
    pods: dict[PodKey, PodSignals] = {}
    for key in keys:
        fields: dict[str, Any] = {
            _FIELDS[signal]: per_pod.get(key) for signal, per_pod in values.items()
        }
        pods[key] = PodSignals(**fields)
    return Observation(at=at, status=PipelineStatus.OK, pods=pods)


def _short(exc: BaseException, limit: int = 300) -> str:
    # Object addresses ("<... object at 0x7f...>") differ on every failure; without them the
    # MetricsAvailable message stays stable and status is not rewritten on every poll.
    text = re.sub(r" (object )?at 0x[0-9a-f]+", "", str(exc))
    return text if len(text) <= limit else text[:limit] + "..."
