"""`make demo`: a local cluster, the chart, the sample hexagon, a hung gateway healed live.

Run after `make testenv` (the Makefile does both). Leaves the cluster running so you can poke
at it; prints how, and how to tear it down.
"""

from __future__ import annotations

import sys
import time

from e2e.scenario import Hexagon, Traffic
from testenv.cluster import Cluster

CLUSTER = "dev"


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def main() -> int:
    started = time.monotonic()
    say(f"starting the local single-node cluster {CLUSTER!r} (etcd, apiserver, kubelet, ...)")
    cluster = Cluster(CLUSTER, with_node=True).up()
    kubeconfig = cluster.kubeconfig
    say(f"cluster ready in {cluster.ready_seconds:.0f} s; KUBECONFIG={kubeconfig}")
    hx = Hexagon(cluster, namespace="demo", log=say)
    hx.load_images()
    say("installing the Helm chart (operator, RBAC, CRDs, bundled Prometheus)")
    hx.install()
    hx.apply_sample()
    say("waiting for the six HexagonNodes to become Ready")
    hx.wait("all six HexagonNodes Ready", hx.all_ready, timeout=300, every=2)
    print("\n$ kubectl get hxn -n demo -o wide\n" + hx.get_hxn(), flush=True)

    node = "demo-north"
    url = hx.client_url(node)
    say(f"sending traffic through the north spoke: {url}")
    traffic = Traffic(url, rate=40, limit_seconds=300).start()
    time.sleep(5)
    victim = hx.pods(node)[0]
    name = victim["metadata"]["name"]
    say(f"hanging gateway pod {name} (its event loop stops answering, like a wedged process)")
    events_before = len(hx.events(node))
    injected = time.monotonic()
    hx.inject(victim, {"hang": True})
    say("the operator's timeline, from the HexagonNode's Events:")
    record = hx.follow_heal(node, since_events=events_before, timeout=240)
    time.sleep(3)
    traffic.stop()
    failed = traffic.failures(injected)
    say(f"heal finished: outcome {record.get('outcome')}")
    say(
        f"client-visible errors: {len(failed)} of {len(traffic.samples)} requests, "
        f"over {traffic.error_window(injected):.1f} s"
    )
    print("\n$ kubectl get hxn -n demo -o wide\n" + hx.get_hxn(), flush=True)
    say(f"demo done in {time.monotonic() - started:.0f} s. The cluster keeps running:")
    hints = [
        (f"export KUBECONFIG={kubeconfig}", ""),
        ("export PATH=/var/cache/hexagon/bin:$PATH", "the pinned kubectl and helm"),
        ("kubectl get hxn -n demo -o wide", "the hexagon"),
        (f"kubectl describe hxn {node} -n demo", "conditions, heal history, Events"),
        ("kubectl get pods -n demo -o wide", "gateway pods (admin port 9901: /metrics)"),
        (f"curl {url}", "a request through the north spoke"),
        ("make cluster-down", "stop everything and clean the machine"),
    ]
    width = max(len(cmd) for cmd, _ in hints) + 2
    lines = [f"  {cmd:<{width}}# {why}" if why else f"  {cmd}" for cmd, why in hints]
    print("\n" + "\n".join(lines) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
