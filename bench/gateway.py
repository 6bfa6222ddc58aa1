"""Side-by-side throughput: bare upstream, nginx as reverse proxy, and the Hexagon gateway.

Run from the repository root:  .venv/bin/python bench/gateway.py [--duration 10] [--connections 50]

Everything runs on 127.0.0.1 in one go with the same load generator (wrk) and settings:
  - upstream: nginx (its own instance, 1 worker) returning a small static body, so the upstream
    is never the bottleneck and all three rows measure the same backend;
  - nginx: a second nginx instance, 1 worker, proxying with upstream keep-alive;
  - gateway: `hexagon-gateway` with `workers: 1` (uvloop), proxying to the same upstream.
Prints requests/s, P50 and P99 for each, and as its last line `gateway_vs_nginx_rps=<ratio>`.
Needs the Debian packages `nginx` (or `nginx-light`) and `wrk`. These are figures, not tests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = "hello from the upstream, a small static body of some sixty-four bytes\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                resp.read()
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def nginx_conf(prefix: Path, server_block: str) -> Path:
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 1000000;
  {server_block}
}}
"""
    )
    return conf


def start_nginx(nginx: str, prefix: Path, server_block: str) -> subprocess.Popen[bytes]:
    prefix.mkdir(parents=True, exist_ok=True)
    conf = nginx_conf(prefix, server_block)
    return subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf)], stderr=subprocess.PIPE)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its direct children (nginx workers)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, *, duration: int, connections: int, threads: int, pid: int | None = None
) -> tuple[float, str, str, float]:
    """requests/s, P50, P99 and the target's CPU microseconds per request."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu0 if pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    return rps, p50, p99, cpu * 1e6 / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx) or shutil.which("wrk") is None:
        sys.exit("needs nginx and wrk: apt-get install -y nginx-light wrk")
    up_port, nginx_port, gw_port, gw_admin = free_port(), free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="hexagon-bench-") as tmp:
        base = Path(tmp)
        try:
            procs.append(
                start_nginx(
                    nginx,
                    base / "upstream",
                    f"server {{ listen 127.0.0.1:{up_port} reuseport backlog=4096;"
                    f' location / {{ default_type text/plain; return 200 "{BODY.strip()}"; }} }}',
                )
            )
            procs.append(
                start_nginx(
                    nginx,
                    base / "proxy",
                    f"upstream up {{ server 127.0.0.1:{up_port}; keepalive 128; }}"
                    f" server {{ listen 127.0.0.1:{nginx_port} backlog=4096; location / {{"
                    " proxy_pass http://up; proxy_http_version 1.1;"
                    ' proxy_set_header Connection ""; } }',
                )
            )
            config = base / "gateway.yaml"
            config.write_text(
                f"""version: 1
workers: 1
listen: {{data: {{host: 127.0.0.1, port: {gw_port}}}, admin: {{host: 127.0.0.1, port: {gw_admin}}}}}
upstreams:
  - name: bench
    endpoints: [{{address: "127.0.0.1:{up_port}"}}]
routes:
  - name: all
    match: {{pathPrefix: /}}
    upstream: bench
"""
            )
            exe = ROOT / ".venv" / "bin" / "hexagon-gateway"
            gw = subprocess.Popen(
                [str(exe), "--config", str(config), "--log-level", "WARNING"],
                stderr=subprocess.DEVNULL,
            )
            procs.append(gw)
            for port in (up_port, nginx_port, gw_port):
                wait_http(f"http://127.0.0.1:{port}/")
            targets = {
                "upstream": (up_port, procs[0].pid),
                "nginx": (nginx_port, procs[1].pid),
                "gateway": (gw_port, gw.pid),
            }
            runs: dict[str, list[tuple[float, str, str, float]]] = {n: [] for n in targets}
            order = ["upstream"] + ["nginx", "gateway"] * args.rounds
            for name in order:
                port, pid = targets[name]
                url = f"http://127.0.0.1:{port}/bench"
                if not runs[name]:
                    wrk(url, duration=1, connections=args.connections, threads=args.threads)
                runs[name].append(
                    wrk(url, duration=args.duration, connections=args.connections,
                        threads=args.threads, pid=pid)
                )  # fmt: skip
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, cpus={os.cpu_count()}, "
        f"rounds={args.rounds} (nginx and gateway interleaved; median round shown)"
    )
    print(f"{'target':<10} {'requests/s':>12} {'P50':>10} {'P99':>10} {'cpu_us/req':>11}")
    medians = {}
    for name, results in runs.items():
        ordered = sorted(results, key=lambda r: r[0])
        rps, p50, p99, cpu_us = ordered[len(ordered) // 2]
        medians[name] = rps
        print(f"{name:<10} {rps:>12.0f} {p50:>10} {p99:>10} {cpu_us:>11.1f}")
    print(f"gateway_vs_nginx_rps={medians['gateway'] / medians['nginx']:.3f}")


if __name__ == "__main__":
    main()
