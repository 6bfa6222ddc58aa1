"""How fast the operator heals a hung gateway pod, on the real single-node cluster.

Brings up (or reuses, with HEXAGON_TEST_CLUSTER=NAME) the project's real cluster with a node,
runs the operator as a subprocess with a 1 s poll interval and a real Prometheus scraping the
gateway pods every second (discovered through the operator's HTTP-SD endpoint), sends steady
traffic through the node's Service (ClusterIP, as a client in the cluster would), hangs one
pod through its admin API and prints:

- the client-visible error window (first to last failed request, as sent);
- breach onset (the trigger's onset in the heal record) -> the pod out of the Service's
  endpoints (observed by polling the EndpointSlices);
- decision (heal record start) -> the replacement Ready and back in the endpoints;

ending with ``isolation_seconds=<x>`` and ``respawn_seconds=<y>``. Figures, not assertions:
it fails only when it cannot run. Usage::

    .venv/bin/python bench/heal.py [--replicas 3] [--rate 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hexagon_operator.health.records import parse_time  # noqa: E402

from testenv import projectimages  # noqa: E402
from testenv.cluster import Cluster, claim_session_name, node_lock  # noqa: E402
from testenv.paths import BIN  # noqa: E402
from testenv.prometheus import Prometheus  # noqa: E402
from tests.integration.heal.fleet import Fleet, Traffic, node_manifest  # noqa: E402
from tests.integration.operator.opkube import install_crd  # noqa: E402

NODE = "bench"


def wait(probe: Any, what: str, timeout: float = 180, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(every)
    raise SystemExit(f"bench/heal.py: timed out waiting for {what}")


def one_round(f: Fleet, *, replicas: int, rate: float, victim: str) -> dict[str, float]:
    pods = wait(lambda: f.ready_pods(NODE, replicas), f"{replicas} pods Ready")
    ip = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    old_uid = next(p["metadata"]["uid"] for p in pods if p["metadata"]["name"] == victim)
    svc = json.loads(f_kubectl(f, "get", "svc", NODE, "-o", "json"))
    cluster_ip = svc["spec"]["clusterIP"]
    wait(lambda: set(ip.values()) <= f.endpoints(NODE), "all pods in the endpoints")
    with Traffic(f.sd_url(), rate=rate, timeout=2.0, fixed=[cluster_ip]) as traffic:
        time.sleep(5)  # a baseline: the fleet serves, Prometheus has every pod's series
        baseline = [r for r in traffic.results if r[2] == 0]
        fault_at = time.time()
        f.fault(ip[victim], {"hang": True})
        out_at = wait(lambda: ip[victim] not in f.endpoints(NODE) and time.time(), "isolation")
        new_pod = wait(
            lambda: next(
                (p for p in f.pods(NODE)
                 if p["metadata"]["name"] == victim and p["metadata"]["uid"] != old_uid
                 and p["status"].get("podIP")),
                None,
            ),
            "the replacement pod",
        )  # fmt: skip
        new_ip = new_pod["status"]["podIP"]
        back_at = wait(lambda: new_ip in f.endpoints(NODE) and time.time(), "back in rotation")
        time.sleep(3)  # the tail of the error window, if any
        results = list(traffic.results)
    rec = wait(lambda: heal_record(f, victim, since=fault_at), "the heal record", 30)
    onset = min(parse_time(t.get("since")) or fault_at for t in rec["trigger"])
    decided = parse_time(rec["startedAt"]) or fault_at
    failed = [t for t, _ip, status in results if t >= fault_at and (status == 0 or status >= 500)]
    window = (max(failed) - min(failed)) if failed else 0.0
    sent = [r for r in results if r[0] >= fault_at]
    return {
        "requests_after_fault": float(len(sent)),
        "failed_requests": float(len(failed)),
        "baseline_failures": float(len(baseline)),
        "error_window_seconds": window,
        "fault_to_onset_seconds": onset - fault_at,
        "isolation_seconds": out_at - onset,
        "fault_to_isolation_seconds": out_at - fault_at,
        "respawn_seconds": back_at - decided,
        "fault_to_restored_seconds": back_at - fault_at,
    }


def heal_record(f: Fleet, pod: str, *, since: float) -> dict[str, Any] | None:
    """This round's heal of ``pod``: running (``status.heal``) or finished (history)."""
    status = f.node(NODE).get("status") or {}
    records = [
        *((status.get("heal") or {}).get("active") or []),
        *(status.get("healHistory") or []),
    ]
    for rec in records:
        started = parse_time(rec.get("startedAt")) or 0.0
        if pod in [p["name"] for p in rec["pods"]] and started >= since:
            return dict(rec)
    return None


def f_kubectl(f: Fleet, *args: str) -> str:
    from tests.integration.operator.opkube import kubectl_ok

    return kubectl_ok(f.kubeconfig, "-n", f.namespace, *args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s through the Service")
    parser.add_argument("--rounds", type=int, default=1, help="hang a different pod each round")
    # Detection and probe settings default to the CRD's defaults, not the tests' short ones.
    parser.add_argument("--consecutive-breaches", type=int, default=3)
    parser.add_argument("--probe-deadline", type=int, default=10, help="seconds")
    args = parser.parse_args(argv)
    import os

    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    with contextlib.ExitStack() as stack:
        name = os.environ.get("HEXAGON_TEST_CLUSTER") or stack.enter_context(claim_session_name())
        stack.enter_context(node_lock())
        cluster = Cluster(name, with_node=True).up()
        if not os.environ.get("HEXAGON_TEST_CLUSTER"):
            stack.callback(cluster.down)
        image = cluster.load(projectimages.build("gateway"))
        install_crd(cluster.kubeconfig)
        ns = cluster.namespace("bench-heal")
        stack.callback(cluster.kubectl, "delete", "namespace", ns, "--wait=false", check=False)
        logs = Path(tempfile.mkdtemp(prefix="hexagon-bench-heal-"))
        f = Fleet(cluster.kubeconfig, ns, image, logs)
        prom = Prometheus(f.scrape_config(), state=logs).start()
        stack.callback(prom.stop)
        f.prometheus_url = prom.url
        f.start_operator()
        stack.callback(f.close)
        self_heal = {
            "consecutiveBreaches": args.consecutive_breaches,
            "probeDeadlineSeconds": args.probe_deadline,
            "probeTimeoutMs": min(5000, args.probe_deadline * 500),
        }
        f.apply(node_manifest(NODE, image=image, replicas=args.replicas, self_heal=self_heal))
        rounds = []
        for i in range(args.rounds):
            victim = f"{NODE}-{(i + 1) % args.replicas}"
            figures = one_round(f, replicas=args.replicas, rate=args.rate, victim=victim)
            rounds.append(figures)
            print(f"round {i + 1} ({victim} hung): " + json.dumps(
                {k: round(v, 3) for k, v in figures.items()}), flush=True)  # fmt: skip
        print(f"operator logs: {logs}")
        keys = rounds[0].keys()
        med = {k: statistics.median(r[k] for r in rounds) for k in keys}
        print(
            f"1 s scrape, 1 s poll, {args.replicas} pods, {args.rate:g} req/s through the "
            f"Service (new connection each), consecutiveBreaches={args.consecutive_breaches}, "
            f"probeDeadlineSeconds={args.probe_deadline}, {args.rounds} round(s), medians:"
        )
        failed, sent = med["failed_requests"], med["requests_after_fault"]
        window = med["error_window_seconds"]
        print(f"client_error_window_seconds={window:.2f} (failed {failed:.0f} of {sent:.0f})")
        print(f"fault_to_breach_onset_seconds={med['fault_to_onset_seconds']:.2f}")
        print(f"isolation_seconds={med['isolation_seconds']:.2f}")
        print(f"respawn_seconds={med['respawn_seconds']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
