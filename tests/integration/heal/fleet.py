"""A gateway fleet under heal, with real parts only: the operator as a subprocess against the
real single-node cluster, a real Prometheus on the host discovering the gateway pods through
the operator's HTTP-SD endpoint (1 s scrape), real traffic to the pods, faults injected
through the gateways' admin API. Shared by the heal tests and ``bench/heal.py``.

Everything a check reads is what a user sees: the HexagonNode's status and conditions,
Events, the pods' readiness and the Service's endpoints, HTTP answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hexagon_operator.health.queries import http_sd_scrape_config

from tests.integration.operator.opkube import get_json, kubectl, kubectl_ok, running_operator

TOPOLOGY = "healt"
ADMIN = 9901
DATA = 8080

# Timings the CRD does not expose, shortened so a scenario takes seconds (see health/loop.py).
TUNING = {
    "drainSeconds": 1,
    "recoveryHoldSeconds": 5,
    "rampStepSeconds": 1,
    "actionRetrySeconds": 4,
    "staleAfterSeconds": 6,
    "respawnTimeoutSeconds": 120,
    "restoreWaitSeconds": 60,
    "recoveryTimeoutSeconds": 300,
    "minRequestRate": 0.5,
}
SELF_HEAL = {
    "p99ThresholdMs": 300,
    "consecutiveBreaches": 2,
    "windowSeconds": 30,
    "probeTimeoutMs": 1000,
    "probeDeadlineSeconds": 3,
    "maxUnavailablePercent": 34,
    "cooldownSeconds": 5,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_manifest(
    name: str,
    *,
    image: str,
    spoke: str = "north",
    replicas: int = 3,
    self_heal: dict[str, Any] | None = None,
) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "hexagon.dev/v1alpha1",
            "kind": "HexagonNode",
            "metadata": {"name": name},
            "spec": {
                "topology": TOPOLOGY,
                "spoke": spoke,
                "replicas": replicas,
                "image": image,
                "imagePullPolicy": "Never",
                "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}},
                "gateway": {
                    # Traffic goes to an unmatched path: a 404 from the gateway itself, so the
                    # fleet needs no upstream and injected latency is the only slowness.
                    "upstreams": [{"name": "void", "endpoints": [{"address": "127.0.0.1:9"}]}],
                    "routes": [{"name": "a", "match": {"pathPrefix": "/a"}, "upstream": "void"}],
                },
                "selfHeal": {**SELF_HEAL, **(self_heal or {})},
                "slo": {"p99Ms": 200},  # the heal threshold must not be below the SLO
            },
        }
    )


def http(
    method: str, url: str, *, body: Any = None, token: str = "", timeout: float = 5
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("X-Auth-Token", token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
            status = int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def cond(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


@dataclass
class Fleet:
    """One namespace of HexagonNodes healed by a running operator, scraped by Prometheus."""

    kubeconfig: Path | str
    namespace: str
    image: str
    log_dir: Path
    sd_port: int = field(default_factory=free_port)
    prometheus_url: str = ""
    poll_seconds: float = 1.0
    tuning: dict[str, Any] = field(default_factory=lambda: dict(TUNING))
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    operator: Any = None
    runs: int = 0

    # -- operator ----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            "HEXAGON_GATEWAY_IMAGE": self.image,
            "HEXAGON_PROMETHEUS_URL": self.prometheus_url,
            "HEXAGON_POLL_INTERVAL_SECONDS": str(self.poll_seconds),
            "HEXAGON_SD_PORT": str(self.sd_port),
            "HEXAGON_HEAL_TUNING": json.dumps(self.tuning),
            "HEXAGON_RESYNC_SECONDS": "10",
        }

    def start_operator(self) -> None:
        self.runs += 1
        log = self.log_dir / f"operator-{self.runs}.log"
        self._op_ctx = running_operator(
            self.kubeconfig, namespace=self.namespace, log=log, env=self.env()
        )
        self.operator = self._op_ctx.__enter__()
        self.wait(lambda: http("GET", self.sd_url())[0] == 200, "the operator's SD endpoint", 60)

    def kill_operator(self) -> None:
        """SIGKILL: no cleanup hook runs, as when a node dies under the operator."""
        self.operator.kill()
        self.operator.wait()
        self._op_ctx.__exit__(None, None, None)
        self.operator = None

    def stop_operator(self) -> None:
        if self.operator is not None:
            self._op_ctx.__exit__(None, None, None)
            self.operator = None

    def operator_logs(self, tail: int = 6000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(self.log_dir.glob("operator-*.log"))
        )

    def sd_url(self) -> str:
        return f"http://127.0.0.1:{self.sd_port}/sd/gateways"

    def scrape_config(self) -> dict[str, Any]:
        job = http_sd_scrape_config(url=self.sd_url(), scrape_interval_seconds=1, refresh_seconds=1)
        return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [job]}  # fmt: skip

    # -- cluster -----------------------------------------------------------------------------

    def apply(self, manifest: str) -> None:
        kubectl_ok(self.kubeconfig, "apply", "-n", self.namespace, "-f", "-", stdin=manifest)

    def patch_self_heal(self, node: str, values: dict[str, Any]) -> None:
        kubectl_ok(self.kubeconfig, "patch", f"hxn/{node}", "-n", self.namespace,
                   "--type=merge", "-p", json.dumps({"spec": {"selfHeal": values}}))  # fmt: skip

    def node(self, name: str) -> dict[str, Any]:
        return get_json(self.kubeconfig, "hxn", name, "-n", self.namespace) or {}

    def pods(self, node: str) -> list[dict[str, Any]]:
        listed = get_json(self.kubeconfig, "pods", "-n", self.namespace,
                          "-l", f"app.kubernetes.io/instance={node}")  # fmt: skip
        return [p for p in (listed or {}).get("items") or []
                if not p["metadata"].get("deletionTimestamp")]  # fmt: skip

    def pod(self, name: str) -> dict[str, Any]:
        return get_json(self.kubeconfig, "pod", name, "-n", self.namespace) or {}

    def ready_pods(self, node: str, count: int) -> list[dict[str, Any]] | None:
        items = self.pods(node)
        ok = len(items) == count and all(
            cond(p, "Ready").get("status") == "True"
            and cond(p, "hexagon.dev/in-rotation").get("status") == "True"
            for p in items
        )
        return items if ok else None

    def endpoints(self, node: str) -> set[str]:
        """Ready addresses of the node's client Service, from its EndpointSlices."""
        listed = get_json(self.kubeconfig, "endpointslices", "-n", self.namespace,
                          "-l", f"kubernetes.io/service-name={node}")  # fmt: skip
        out: set[str] = set()
        for s in (listed or {}).get("items") or []:
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready"):
                    out.update(ep.get("addresses") or [])
        return out

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        listed = get_json(self.kubeconfig, "events", "-n", self.namespace)
        items = list((listed or {}).get("items") or [])
        items.sort(key=lambda e: (e.get("lastTimestamp") or "", e["metadata"]["name"]))
        return [e for e in items if reason is None or e.get("reason") == reason]

    def token(self) -> str:
        secret = get_json(self.kubeconfig, "secret", f"{TOPOLOGY}-hexagon-admin",
                          "-n", self.namespace)  # fmt: skip
        return base64.b64decode((secret or {})["data"]["token"]).decode()

    def fault(self, ip: str, fault: dict[str, Any] | None) -> None:
        """Set (or clear, with None) a fault on the gateway at ``ip`` via its admin API."""
        url = f"http://{ip}:{ADMIN}/debug/fault"
        if fault is None:
            status, body = http("DELETE", url, token=self.token())
        else:
            status, body = http("POST", url, body=fault, token=self.token())
        assert status == 200, f"fault {fault} on {ip}: {status} {body}"

    def wait(self, probe: Any, what: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

    def close(self) -> None:
        self.stop_operator()
        self._stack.close()


def describe(fleet: Fleet, node: str) -> str:
    """What `kubectl describe`-minded person would look at, for failure messages."""
    done = kubectl(fleet.kubeconfig, "get", "hxn,pods", "-n", fleet.namespace, "-o", "wide")
    status = fleet.node(node).get("status") or {}
    return f"{done.stdout}\nstatus: {json.dumps(status, indent=1)[-4000:]}"


class Traffic:
    """Steady request load against every discovered gateway pod (``rate`` per pod per
    second, concurrent, each bounded by ``timeout``), in a background thread. Targets come
    from the operator's SD list, so respawned pods get traffic as soon as they are listed."""

    def __init__(
        self,
        sd_url: str,
        *,
        rate: float = 10.0,
        timeout: float = 3.0,
        fixed: list[str] | None = None,
    ) -> None:
        self.sd_url = sd_url
        self.rate = rate
        self.timeout = timeout
        self.fixed = fixed  # fixed addresses (a Service's ClusterIP) instead of the SD list
        self.results: list[tuple[float, str, int]] = []  # (sent at, ip, status; 0 = error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        # A new connection per request, as many independent clients would open: through a
        # Service, kube-proxy picks a pod per connection, so pooled keep-alive connections
        # would pin the load to whichever pods they first reached.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            ips: list[str] = []
            refreshed = 0.0
            tasks: set[asyncio.Task[None]] = set()
            while not self._stop.is_set():
                now = time.monotonic()
                if self.fixed is not None:
                    ips = self.fixed
                elif now - refreshed > 1.0:
                    refreshed = now
                    status, body = await asyncio.to_thread(http, "GET", self.sd_url)
                    if status == 200:
                        ips = [t["targets"][0].split(":")[0] for t in body]
                for ip in ips:
                    task = asyncio.create_task(self._one(session, ip))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(1.0 / self.rate)
            for task in list(tasks):
                task.cancel()

    async def _one(self, session: Any, ip: str) -> None:
        status = 0
        sent = time.time()
        with contextlib.suppress(Exception):
            async with session.get(f"http://{ip}:{DATA}/traffic") as resp:
                await resp.read()
                status = resp.status
        self.results.append((sent, ip, status))


@contextlib.contextmanager
def traffic(fleet: Fleet, **options: Any) -> Iterator[Traffic]:
    with Traffic(fleet.sd_url(), **options) as t:
        yield t
