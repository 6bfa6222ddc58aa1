"""The user's journey on a real cluster, as steps shared by the e2e tests and `make demo`.

Install the chart, apply the sample hexagon and its upstream, send traffic through the north
spoke's client Service, hang one gateway pod, and follow the operator's heal through what a
user sees: `kubectl get hxn`, the HexagonNode's status and its Events.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from testenv.cluster import Cluster
from testenv.paths import REPO, binary

CHART = REPO / "charts" / "hexagon"
EXAMPLES = REPO / "crds" / "examples"
MANIFESTS = REPO / "e2e" / "manifests"
RELEASE = "hexagon"
SYSTEM_NS = "hexagon-system"
IMAGES = ("gateway", "operator", "prometheus")
Log = Callable[[str], None]


@dataclass
class Traffic:
    """A bounded request loop against one URL; records (monotonic time, status or error)."""

    url: str
    rate: float = 50.0
    limit_seconds: float = 300.0
    samples: list[tuple[float, int | str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    resp.read()
                    outcome: int | str = resp.status
            except urllib.error.HTTPError as e:
                outcome = e.code
            except OSError as e:
                outcome = type(e).__name__
            self.samples.append((began, outcome))
            self._stop.wait(max(0.0, 1 / self.rate - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def failures(self, since: float = 0.0) -> list[tuple[float, int | str]]:
        return [(t, o) for t, o in self.samples if t >= since and o != 200]

    def error_window(self, since: float = 0.0) -> float:
        """Seconds from the first failed request to the last one (0 when none failed)."""
        bad = self.failures(since)
        return bad[-1][0] - bad[0][0] if bad else 0.0


class Hexagon:
    """A Hexagon installation on a running cluster, driven as a user would."""

    def __init__(self, cluster: Cluster, *, namespace: str = "demo", log: Log = print) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.log = log

    # -- plumbing --------------------------------------------------------------------------
    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        done = subprocess.run(
            [binary("kubectl"), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def helm(self, *args: str) -> str:
        done = subprocess.run(
            [binary("helm"), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def wait(
        self, what: str, check: Callable[[], bool], *, timeout: float, every: float = 1.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (RuntimeError, ValueError, KeyError):
                pass
            time.sleep(every)
        raise TimeoutError(f"{what}: not within {timeout:.0f} s")

    # -- steps -----------------------------------------------------------------------------
    def load_images(self) -> None:
        from testenv import projectimages

        for name in IMAGES:
            self.log(f"building and loading image {name}")
            self.cluster.load(projectimages.build(name))

    def install(self, *values: str) -> None:
        args = [
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            "-n",
            SYSTEM_NS,
            "--create-namespace",
            "--wait",
            "--timeout",
            "5m",
            # `helm test` then sends a request through the sample hexagon's north spoke
            "--set",
            f"tests.gatewayURL=http://demo-north.{self.ns}.svc:8080/api/hello",
        ]
        for v in values:
            args += ["--set", v]
        self.helm(*args)
        self.log(f"chart installed: release {RELEASE} in {SYSTEM_NS}")

    def helm_test(self) -> str:
        return self.helm("test", RELEASE, "-n", SYSTEM_NS, "--logs", "--timeout", "2m")

    def apply_sample(self) -> None:
        self.kubectl("create", "namespace", self.ns, check=False)
        self.kubectl("apply", "-n", self.ns, "-f", str(MANIFESTS / "upstream.yaml"))
        self.kubectl("apply", "-n", self.ns, "-f", str(EXAMPLES / "hexagon.yaml"))
        self.log(f"sample hexagon and its upstream applied in namespace {self.ns}")

    def nodes(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json("get", "hxn", "-n", self.ns)["items"]
        return items

    def all_ready(self) -> bool:
        nodes = self.nodes()
        return bool(nodes) and all(
            n.get("status", {}).get("readyReplicas", 0) == n["spec"].get("replicas", 0) > 0
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
            for n in nodes
        )

    def get_hxn(self) -> str:
        return self.kubectl("get", "hxn", "-n", self.ns, "-o", "wide")

    def client_url(self, node: str, path: str = "/api/hello") -> str:
        ip = self.kubectl("get", "service", node, "-n", self.ns, "-o", "jsonpath={.spec.clusterIP}")
        return f"http://{ip.strip()}:8080{path}"

    def pods(self, node: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json(
            "get", "pods", "-n", self.ns, "-l", f"app.kubernetes.io/instance={node}"
        )["items"]
        return sorted(items, key=lambda p: p["metadata"]["name"])

    def admin_token(self, topology: str = "demo") -> str:
        secret = self.json("get", "secret", f"{topology}-hexagon-admin", "-n", self.ns)
        return base64.b64decode(secret["data"]["token"]).decode()

    def inject(self, pod: dict[str, Any], fault: dict[str, Any]) -> None:
        req = urllib.request.Request(
            f"http://{pod['status']['podIP']}:9901/debug/fault",
            data=json.dumps(fault).encode(),
            method="POST",
            headers={"X-Auth-Token": self.admin_token(), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
        self.log(f"fault {fault} injected into pod {pod['metadata']['name']}")

    def events(self, node: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json(
            "get",
            "events",
            "-n",
            self.ns,
            "--field-selector",
            f"involvedObject.kind=HexagonNode,involvedObject.name={node}",
        )["items"]
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def heal_history(self, node: str) -> list[dict[str, Any]]:
        status = self.json("get", "hxn", node, "-n", self.ns).get("status", {})
        history: list[dict[str, Any]] = status.get("healHistory") or []
        return history

    def follow_heal(self, node: str, *, since_events: int, timeout: float) -> dict[str, Any]:
        """Print each new Event of the node as it comes; return the finished heal record."""
        start = time.monotonic()
        seen = since_events
        done_before = len(self.heal_history(node))
        while time.monotonic() - start < timeout:
            events = self.events(node)
            for e in events[seen:]:
                self.log(
                    f"+{time.monotonic() - start:5.1f}s  {e['type']:<7} {e['reason']:<20} "
                    f"{e.get('message', '')}"
                )
            seen = max(seen, len(events))
            history = self.heal_history(node)
            if len(history) > done_before:
                return history[-1]
            time.sleep(0.5)
        raise TimeoutError(f"no finished heal of {node} within {timeout:.0f} s")

    def uninstall(self) -> None:
        self.kubectl("delete", "namespace", self.ns, "--wait=true", "--timeout=120s", check=False)
        self.helm("uninstall", RELEASE, "-n", SYSTEM_NS, "--wait")
        for name in crd_names():
            self.kubectl("delete", "crd", name, "--ignore-not-found")
        self.kubectl("delete", "namespace", SYSTEM_NS, "--wait=true", "--timeout=120s", check=False)


def crd_names() -> list[str]:
    return [
        doc["metadata"]["name"]
        for path in sorted((CHART / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
