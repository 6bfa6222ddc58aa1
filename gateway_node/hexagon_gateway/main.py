"""`hexagon-gateway --config PATH`: the console script every gateway pod runs.

With `workers: N > 1` the parent forks N workers that share the data port through
SO_REUSEPORT (the kernel spreads connections); worker i serves its admin endpoints on the admin
port + i. The parent only relays SIGTERM/SIGHUP and exits when a worker dies, so Kubernetes
restarts the container rather than running with fewer workers than configured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from hexagon_gateway.app import GatewayProcess, run_until_signalled
from hexagon_gateway.config import ConfigError, load_config
from hexagon_gateway.logs import setup_logging

log = logging.getLogger("hexagon_gateway.main")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hexagon-gateway", description=__doc__)
    parser.add_argument("--config", required=True, help="path of the YAML config")
    parser.add_argument("--log-level", default=os.environ.get("HEXAGON_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--shutdown-grace", type=float, default=25.0, help="seconds to finish in-flight requests"
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace, *, reuse_port: bool, index: int) -> None:
    process = GatewayProcess(
        config_path=args.config,
        reuse_port=reuse_port,
        admin_port_offset=index,
        shutdown_grace=args.shutdown_grace,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: process.reload(source="sighup"))
    await run_until_signalled(process, stop)


def _run_worker(args: argparse.Namespace, *, reuse_port: bool, index: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a locked dependency on Linux
        pass
    try:
        asyncio.run(_serve(args, reuse_port=reuse_port, index=index))
    except OSError as exc:  # a port already taken, an address not on this host
        log.error("cannot start", extra={"error": str(exc), "worker": index})
        sys.exit(1)


def _workers(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as fh:
            return load_config(fh.read()).workers
    except (OSError, ConfigError):
        return 1  # the worker itself reports the problem and stays unready


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    setup_logging(args.log_level)
    workers = _workers(args.config)
    if workers <= 1:
        _run_worker(args, reuse_port=False, index=0)
        return
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run_worker(args, reuse_port=True, index=index)
            except BaseException:
                log.exception("worker failed", extra={"worker": index})
                code = 1
            os._exit(code)
        children.append(pid)

    def relay(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, relay)
    status = 0
    remaining = set(children)
    while remaining:
        pid, wstatus = os.wait()
        remaining.discard(pid)
        code = os.waitstatus_to_exitcode(wstatus)
        if code != 0 and status == 0:
            status = 1
            log.error("worker exited, stopping the others", extra={"pid": pid, "code": code})
            relay(signal.SIGTERM, None)
    sys.exit(status)


if __name__ == "__main__":
    main()
