"""The operator's one fleet-wide heal loop: observe once, plan, execute, complete - per poll.

Why one loop and not a kopf daemon per HexagonNode: the issue asks for one PromQL query per
signal per poll for every watched pod (never one per pod or per node), and the storm rules
(one healing node per topology, correlated failures across nodes) need every node's view at
once. So a single task started with the operator polls every HEXAGON_POLL_INTERVAL_SECONDS:

1. list the watched HexagonNodes and gateway pods (also the HTTP-SD target list);
2. ``PrometheusSource.observe`` once (never raises; trouble makes every pod *unknown*);
3. each node's :class:`Monitor` (its own ``spec.selfHeal`` thresholds) -> an Assessment;
4. ``plan_cycle`` -> persist (records "step started"), emit Events, execute the work,
   ``complete`` -> persist again (records "done"); repeat at once while steps finish
   within the poll (plan.py's protocol), with fresh pod facts each pass.

``HEXAGON_HEAL_TUNING`` (JSON, camelCase keys of ``HealSettings``) overrides timings that the
CRD does not expose (drain, hold, ramp, retries); tests and the bench shorten them with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hexagon_operator import api, pods
from hexagon_operator.health.cycle import NodePlan, NodeState, complete, plan_cycle
from hexagon_operator.health.healer import Healer, NodeRun
from hexagon_operator.health.metrics import HealMetrics
from hexagon_operator.health.monitor import Monitor
from hexagon_operator.health.plan import PodFacts
from hexagon_operator.health.policy import NodeView, PodView
from hexagon_operator.health.queries import QueryScope, ScrapeTarget, targets_from_pods
from hexagon_operator.health.records import read_active, read_history
from hexagon_operator.health.samples import Observation, PodKey, PodSignals
from hexagon_operator.health.settings import (
    HealSettings,
    settings_from_dataclass,
    settings_from_spec,
)
from hexagon_operator.health.source import PrometheusSource
from hexagon_operator.health.verdicts import Assessment, Availability, Code, NodeKey, Verdict
from hexagon_operator.kube import KubeError
from hexagon_operator.reconcile import Runtime
from hexagon_operator.resources.labels import child_names

log = logging.getLogger(__name__)
GATEWAY_SELECTOR = f"{api.LABEL_NAME}={api.APP_NAME},{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
MAX_PASSES = 12  # advance-until-idle passes within one poll
STARTUP_GRACE_SECONDS = 60.0


def tuning_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Validated ``HealSettings`` overrides from HEXAGON_HEAL_TUNING (snake_case names)."""
    raw = (os.environ if env is None else env).get("HEXAGON_HEAL_TUNING", "").strip()
    if not raw:
        return {}
    try:
        given = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"HEXAGON_HEAL_TUNING: not JSON ({exc})") from None
    if not isinstance(given, dict):
        raise ValueError("HEXAGON_HEAL_TUNING: expected a JSON object of selfHeal settings")
    parsed = settings_from_spec(given)  # raises naming the field on a bad value
    names = {f.name for f in dataclasses.fields(HealSettings)}
    out = {}
    for key in given:
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")
        if snake not in names:
            raise ValueError(f"HEXAGON_HEAL_TUNING.{key}: unknown setting")
        out[snake] = getattr(parsed, snake)
    return out


@dataclass
class HealLoop:
    runtime: Runtime
    source: PrometheusSource
    interval: float
    tuning: Mapping[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    metrics: HealMetrics = field(default_factory=HealMetrics)
    targets: list[ScrapeTarget] = field(default_factory=list)
    targets_at: float = 0.0
    polls: int = 0
    poll_failures: int = 0
    _monitors: dict[NodeKey, Monitor] = field(default_factory=dict)
    _seen_up: set[tuple[PodKey, str]] = field(default_factory=set)
    _healer: Healer | None = None

    @property
    def healer(self) -> Healer:
        if self._healer is None:
            self._healer = Healer(self.runtime)
        return self._healer

    async def close(self) -> None:
        if self._healer is not None:
            await self._healer.close()
        await asyncio.to_thread(self.source.close)

    async def run(self) -> None:
        """Poll forever; one failed poll (an API outage) is logged and the next one retries."""
        while True:
            began = time.monotonic()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any single bad poll
                self.poll_failures += 1
                log.exception("heal poll failed; retrying next interval")
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - began)))

    # ------------------------------------------------------------------ listing

    async def _list(self, url_suffix: str, *, selector: str = "") -> list[dict[str, Any]]:
        query = [("labelSelector", selector)] if selector else []
        namespaces = self.runtime.settings.namespaces
        if not namespaces:
            prefix = "/api/v1" if url_suffix == "pods" else f"/apis/{api.API_VERSION}"
            got = await self.runtime.kube.request("GET", f"{prefix}/{url_suffix}", query=query)
            return list(got.get("items") or [])
        out: list[dict[str, Any]] = []
        for ns in namespaces:
            if url_suffix == "pods":
                out += await self.runtime.kube.list("v1", "Pod", namespace=ns, selector=selector)
            else:
                out += await self.runtime.kube.list(api.API_VERSION, api.KIND, namespace=ns)
        return out

    async def list_pods(self) -> list[dict[str, Any]]:
        listed = await self._list("pods", selector=GATEWAY_SELECTOR)
        # A terminating pod leaves the list at once: its dead target must not lend its
        # `up == 0` to the replacement that takes over its name (and so its pod label).
        live = [p for p in listed if not (p.get("metadata") or {}).get("deletionTimestamp")]
        self.targets = targets_from_pods(live, port=api.ADMIN_PORT)
        self.targets_at = time.monotonic()
        return listed

    async def sd_targets(self, max_age: float = 2.0) -> list[ScrapeTarget]:
        """The HTTP-SD list, at most ``max_age`` seconds old (re-listed when older)."""
        if time.monotonic() - self.targets_at > max_age:
            try:
                await self.list_pods()
            except KubeError as exc:
                log.warning("listing gateway pods for service discovery failed: %s", exc)
        return self.targets

    async def _world(self) -> tuple[list[NodeRun], dict[NodeKey, api.NodeSpec]]:
        nodes = await self._list(api.PLURAL)
        listed = await self.list_pods()
        by_node: dict[NodeKey, dict[str, dict[str, Any]]] = {}
        for pod in listed:
            meta = pod.get("metadata") or {}
            node = (meta.get("labels") or {}).get(api.LABEL_INSTANCE)
            if node:
                by_node.setdefault((meta["namespace"], node), {})[meta["name"]] = pod
        runs, specs = [], {}
        for body in nodes:
            meta = body.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            try:
                spec = api.parse_spec(body.get("spec") or {})
            except api.SpecError:
                continue  # the reconciler reports it; nothing to heal on a spec it rejects
            key = (str(meta["namespace"]), str(meta["name"]))
            specs[key] = spec
            runs.append(NodeRun(body, by_node.get(key, {})))
        return runs, specs

    # ------------------------------------------------------------------ one poll

    def settings_for(self, spec: api.NodeSpec) -> HealSettings:
        return settings_from_dataclass(spec.self_heal, **self.tuning)

    def _assess(
        self, observation: Observation, runs: list[NodeRun], specs: Mapping[NodeKey, api.NodeSpec]
    ) -> Assessment:
        verdicts: dict[PodKey, Verdict] = {}
        nodes: dict[NodeKey, Availability] = {}
        pipelines = []
        for run in runs:
            key = (run.namespace, run.name)
            settings = self.settings_for(specs[key])
            monitor = self._monitors.get(key)
            if monitor is None or monitor.settings != settings:
                monitor = self._monitors[key] = Monitor(settings)
            mine = dataclasses.replace(
                observation,
                pods={
                    k: self._starting(v, run.pods.get(k.pod), k)
                    for k, v in observation.pods.items()
                    if (k.namespace, k.node) == key
                },
            )
            uids = {
                PodKey(run.namespace, run.name, name): str(p["metadata"]["uid"])
                for name, p in run.pods.items()
            }
            part = monitor.update(mine, uids)
            verdicts.update(part.verdicts)
            nodes.update(part.nodes)
            nodes.setdefault(key, part.pipeline)
            pipelines.append(part.pipeline)
        for key in [k for k in self._monitors if k not in specs]:
            del self._monitors[key]
        alive = {
            (PodKey(run.namespace, run.name, n), str(p["metadata"]["uid"]))
            for run in runs
            for n, p in run.pods.items()
        }
        self._seen_up &= alive
        down = [p for p in pipelines if not p.available]
        pipeline = down[0] if down else (pipelines[0] if pipelines else None)
        if pipeline is None:
            pipeline = Availability("False", Code.NO_TARGETS, "no HexagonNode watched")
        return Assessment(verdicts=verdicts, nodes=nodes, pipeline=pipeline)

    def _starting(
        self, signals: PodSignals, pod: Mapping[str, Any] | None, key: PodKey
    ) -> PodSignals:
        """A new pod never scraped successfully yet is starting, not hung: its ``up == 0``
        (often the previous pod's target, which Prometheus drops a scrape or two later) is
        not judged during STARTUP_GRACE_SECONDS after its creation."""
        if pod is None:
            return signals
        uid = str(pod["metadata"]["uid"])
        if signals.up is not None and signals.up >= 1:
            self._seen_up.add((key, uid))
            return signals
        if (key, uid) in self._seen_up:
            return signals
        created = _created(pod)
        if created is not None and self.clock() - created < STARTUP_GRACE_SECONDS:
            return dataclasses.replace(signals, up=None)
        return signals

    def _state(self, run: NodeRun, spec: api.NodeSpec) -> NodeState:
        status = run.body.get("status") or {}
        views, facts = [], {}
        for name, pod in sorted(run.pods.items()):
            uid = str(pod["metadata"]["uid"])
            ip = pods.pod_ip(pod)
            ready = (pods.condition(pod, "Ready") or {}).get("status") == "True"
            views.append(
                PodView(
                    PodKey(run.namespace, run.name, name),
                    uid,
                    ip,
                    ready=ready,
                    in_rotation=pods.gate_status(pod) != "False",
                )
            )
            labels = (pod.get("metadata") or {}).get("labels") or {}
            facts[name] = PodFacts(
                name,
                uid,
                ip,
                containers_ready=pods.is_live(pod) and pods.containers_ready(pod),
                epoch=labels.get(api.LABEL_HEAL_EPOCH),
            )
        view = NodeView(
            namespace=run.namespace,
            name=run.name,
            topology=spec.topology,
            statefulset=child_names(run.name)["statefulset"],
            replicas=spec.replicas,
            pods=tuple(views),
            settings=self.settings_for(spec),
            active=tuple(read_active(status)),
            history=tuple(read_history(status)),
        )
        return NodeState(view, facts, tuple(status.get("conditions") or []))

    async def poll_once(self) -> None:
        runs, specs = await self._world()
        observation = await self.source.observe()
        self.polls += 1
        self.metrics.observe_poll(observation)
        if not runs:
            return
        assessment = self._assess(observation, runs, specs)
        assessed = _uids(runs)
        for _ in range(MAX_PASSES):
            states = [self._state(run, specs[(run.namespace, run.name)]) for run in runs]
            # A pod replaced since this poll's observation has no verdict yet: the one in
            # the assessment belongs to its predecessor (a respawned pod must not inherit
            # its "hung" verdict within the poll that saw it come up).
            now_uids = _uids(runs)
            current = dataclasses.replace(
                assessment,
                verdicts={
                    k: v
                    for k, v in assessment.verdicts.items()
                    if now_uids.get(k) == assessed.get(k)
                },
            )
            plans = plan_cycle(states, current, now=self.clock())
            worked = await asyncio.gather(
                *(self._execute(run, plan) for run, plan in zip(runs, plans, strict=True))
            )
            if not any(worked):
                break
            runs, specs = await self._world()  # fresh pod facts for the next pass

    async def _execute(self, run: NodeRun, plan: NodePlan) -> bool:
        """Persist "started", emit, act, persist "done"; True when any work ran."""
        healer = self.healer
        if not await healer.persist(run, plan):
            return False  # never act on a step whose start is not on record
        await healer.emit(run, plan.events)
        if not plan.work:
            self.metrics.observe_finished(plan.history)
            return False
        weights: dict[str, int] = {}
        results = [await healer.execute(run, w, weights=weights) for w in plan.work]
        done = complete(plan, results, now=self.clock())
        await healer.persist(run, done, weights=weights)
        self.metrics.observe_finished(done.history)
        if weights:
            await healer.push_weights(run)
        return True


def _uids(runs: list[NodeRun]) -> dict[PodKey, str]:
    return {
        PodKey(run.namespace, run.name, name): str(p["metadata"]["uid"])
        for run in runs
        for name, p in run.pods.items()
    }


def _created(pod: Mapping[str, Any]) -> float | None:
    raw = (pod.get("metadata") or {}).get("creationTimestamp")
    try:
        return datetime.strptime(str(raw), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def build_loop(runtime: Runtime, *, tuning: Mapping[str, Any] | None = None) -> HealLoop:
    settings = runtime.settings
    interval = settings.poll_interval_seconds
    rate_window = max(4, round(4 * interval))
    source = PrometheusSource(
        settings.prometheus_url,
        scope=QueryScope(namespaces=settings.namespaces),
        rate_window_seconds=rate_window,
        timeout_seconds=max(1.0, min(5.0, 2 * interval)),
    )
    return HealLoop(
        runtime,
        source,
        interval,
        tuning=dict(tuning_from_env() if tuning is None else tuning),
    )


@dataclass
class Healing:
    """The running heal loop and the operator's HTTP port, for the startup/cleanup hooks."""

    loop: HealLoop
    task: asyncio.Task[None]
    runner: Any = None

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.runner is not None:
            await self.runner.cleanup()
        await self.loop.close()


async def start(runtime: Runtime) -> Healing:
    """Start the poll loop and the HTTP server (HEXAGON_SD_PORT) inside kopf's event loop."""
    from hexagon_operator import httpserver  # it imports this module for its types

    loop = build_loop(runtime)
    runner = await httpserver.serve(loop, port=httpserver.port_from_env())
    task = asyncio.create_task(loop.run(), name="hexagon-heal-loop")
    log.info("heal loop polling %s every %g s", runtime.settings.prometheus_url, loop.interval)
    return Healing(loop, task, runner)
