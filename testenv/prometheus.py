"""A real Prometheus server (Debian's build) started with a configuration the caller gives.

Each instance gets its own port, TSDB directory and log; `wait_for_target` blocks until a job's
target has been scraped successfully, so a test queries only after data exists.
"""

from __future__ import annotations

import json
import socket
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import procs
from .paths import binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(
        self, config: Mapping[str, Any], *, state: Path | None = None, name: str = "prometheus"
    ) -> None:
        self.state = state or Path(tempfile.mkdtemp(prefix="hexagon-prom-"))
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.state / f"{name}.yml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))

    def start(self) -> Prometheus:
        procs.start(
            self.name,
            [
                binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.state / (self.name + '-data')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            state=self.state,
        )
        procs.wait_until(
            "prometheus /-/ready",
            lambda: self._get("/-/ready").startswith("Prometheus"),
            timeout=60,
            state=self.state,
            component=self.name,
        )
        return self

    def stop(self) -> None:
        procs.stop(self.state, self.name)

    def reload(self, config: Mapping[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as resp:
            return str(resp.read().decode())

    def targets(self) -> list[dict[str, Any]]:
        data = json.loads(self._get("/api/v1/targets?state=active"))
        active: list[dict[str, Any]] = data["data"]["activeTargets"]
        return active

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = json.loads(self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
        if data.get("status") != "success":
            raise RuntimeError(f"query failed: {data}")
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def wait_for_target(self, job: str, *, timeout: float = 60, count: int = 1) -> None:
        """Wait until `count` targets of `job` have been scraped successfully."""

        def scraped() -> bool:
            up = [
                t
                for t in self.targets()
                if t["labels"].get("job") == job and t.get("health") == "up"
            ]
            return len(up) >= count

        procs.wait_until(
            f"prometheus target {job!r} up",
            scraped,
            timeout=timeout,
            state=self.state,
            component=self.name,
        )

    def wait_for_samples(self, promql: str, *, timeout: float = 60) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def has() -> bool:
            found[:] = self.query(promql)
            return bool(found)

        procs.wait_until(
            f"prometheus samples for {promql}",
            has,
            timeout=timeout,
            interval=0.5,
            state=self.state,
            component=self.name,
        )
        return found


def static_config(targets: Mapping[str, list[str]], *, interval: str = "1s") -> dict[str, Any]:
    """A scrape configuration with one static job per entry (job name -> host:port list)."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": [{"targets": list(hosts)}],
            }
            for job, hosts in targets.items()
        ],
    }
