"""Starting and stopping the environment's processes by PID, never by name.

Each process gets a pid file and a log file in the cluster's state directory; teardown reads
the pid files, so it stops only what this harness started (a dockerd or containerd that
someone else runs is never touched).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StartError(RuntimeError):
    """A component did not come up; the message carries the tail of its log."""


def start(
    name: str, argv: Sequence[str], *, state: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv in its own session, logging to state/logs/NAME.log, pid in state/pids/."""
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    log = open(state / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    log.close()
    (state / "pids" / f"{name}.pid").write_text(str(proc.pid))
    return proc


def log_tail(state: Path, name: str, lines: int = 30) -> str:
    path = state / "logs" / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    state: Path | None = None,
    component: str | None = None,
    interval: float = 0.2,
) -> None:
    """Poll check() until it is true; on timeout raise with the component's log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    detail = log_tail(state, component) if state and component else ""
    raise StartError(f"{what} not ready after {timeout:.0f} s\n{detail}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop(state: Path, name: str, *, timeout: float = 10.0) -> None:
    """SIGTERM the recorded process group, then SIGKILL after timeout; remove the pid file."""
    pidfile = state / "pids" / f"{name}.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().strip() or 0)
    if pid > 0 and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.05)
    pidfile.unlink(missing_ok=True)


def running(state: Path) -> list[str]:
    """Names of recorded processes still alive."""
    pids = state / "pids"
    if not pids.exists():
        return []
    names = []
    for f in sorted(pids.glob("*.pid")):
        text = f.read_text().strip()
        if text and alive(int(text)):
            names.append(f.stem)
    return names


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120) -> str:
    """Run a short command and return its stdout; raise with stderr on failure."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
