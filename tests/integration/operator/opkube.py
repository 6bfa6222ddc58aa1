"""Helpers for the operator's integration tests: kubectl against the fixture's kubeconfig,
installing the CRD, bounded waits, and running the operator the way production does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "hexagonnodes.hexagon.dev.yaml"
T = TypeVar("T")


class KubeApi(Protocol):
    kubeconfig: Path | str

    def namespace(self, name_prefix: str) -> str: ...


class KubeNode(KubeApi, Protocol):
    def image(self, name: str) -> str: ...


def kubectl(
    kubeconfig: Path | str, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def kubectl_ok(kubeconfig: Path | str, *args: str, stdin: str | None = None) -> str:
    done = kubectl(kubeconfig, *args, stdin=stdin)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def get_json(kubeconfig: Path | str, *args: str) -> dict[str, Any] | None:
    done = kubectl(kubeconfig, "get", *args, "-o", "json")
    if done.returncode != 0:
        return None
    parsed = json.loads(done.stdout)
    return parsed if isinstance(parsed, dict) else None


def install_crd(kubeconfig: Path | str) -> None:
    kubectl_ok(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(CRD))

    def established() -> bool:
        crd = get_json(kubeconfig, "crd", "hexagonnodes.hexagon.dev") or {}
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, what="the HexagonNode CRD to be Established", timeout=60)


def wait_for(probe: Callable[[], T | None], *, what: str, timeout: float = 120) -> T:
    """Poll until ``probe`` returns something truthy; fail naming ``what`` at the bound.
    The bound is generous on purpose: this is a wait, not a timing assertion."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@contextmanager
def running_operator(
    kubeconfig: Path | str, *, namespace: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The ``hexagon-operator`` console script as a subprocess, watching one namespace."""
    exe = shutil.which("hexagon-operator") or str(
        Path(sys.executable).with_name("hexagon-operator")
    )
    full_env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HEXAGON_LOG_JSON": "0",
        # Concurrent test operators must not race for the operator's HTTP port.
        "HEXAGON_SD_PORT": "0",
        **(env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "--standalone", "--namespace", namespace],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
