"""Entry point of the ``hexagon-operator`` console script: settings, logging, then kopf.

Settings come from HEXAGON_* variables (see config.py); ``--standalone`` and ``--namespace``
override them for local runs and tests. kopf runs the handlers registered by importing
``handlers``; the startup hook there applies kopf's own settings (prefixes, watch timeouts,
peering), so this module only decides *what* to run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

import kopf

from . import handlers  # noqa: F401  (registers the kopf handlers)
from .config import ConfigError, Settings, from_env


class JsonFormatter(logging.Formatter):
    """One JSON object per line; kopf puts the object's namespace/name in ``k8s_ref``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            entry["namespace"] = ref.get("namespace")
            entry["name"] = ref.get("name")
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hexagon-operator", description=__doc__)
    parser.add_argument(
        "--standalone", action="store_true", help="run without peering (tests, local runs)"
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: cluster-wide",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging (--log-level debug)")
    return parser.parse_args(argv)


def setup_logging(settings: Settings, *, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    # The kubernetes client logs every request at DEBUG; keep it quiet even when verbose.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = from_env()
    except ConfigError as exc:
        sys.exit(f"hexagon-operator: {exc}")
    if args.standalone:
        settings = replace(settings, standalone=True)
    if args.namespace:
        settings = replace(settings, namespaces=tuple(args.namespace))
    level = "debug" if args.verbose else args.log_level
    kopf.configure(verbose=False)  # kopf's own logging setup would replace ours otherwise
    setup_logging(settings, level=level)
    kopf.run(
        standalone=settings.standalone,
        peering_name=None if settings.standalone else settings.peering_name,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
        ),
        memo=kopf.Memo(settings=settings),
    )


if __name__ == "__main__":
    main()
