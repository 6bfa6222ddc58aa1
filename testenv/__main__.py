"""`python -m testenv up|down|status|images [--name NAME] [--level controlplane|node]`."""

from __future__ import annotations

import argparse
import sys

from .cluster import Cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testenv", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "kubeconfig", "images"])
    parser.add_argument("--name", default="dev", help="cluster name (default: dev)")
    parser.add_argument("--level", choices=["controlplane", "node"], default="node")
    args = parser.parse_args(argv)
    cluster = Cluster(args.name, with_node=args.level == "node")
    if args.command == "up":
        cluster.up()
        print(f"cluster {args.name!r} ({args.level}) ready in {cluster.ready_seconds:.1f} s")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
    elif args.command == "down":
        cluster.down()
        print(f"cluster {args.name!r} stopped and cleaned up")
    elif args.command == "status":
        for component, up in cluster.status().items():
            print(f"{component:24} {'running' if up else 'stopped'}")
    elif args.command == "images":
        from . import projectimages

        for name in ("gateway", "operator", "prometheus"):
            print(f"==> image {name}", flush=True)
            tag = projectimages.build(name)
            if cluster.node is not None and cluster.status().get("containerd"):
                cluster.load(tag)
                print(f"    {tag} built and loaded into cluster {args.name!r}")
            else:
                print(f"    {tag} built (cluster {args.name!r} not running: not loaded)")
    else:
        print(cluster.kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
