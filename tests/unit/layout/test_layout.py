"""The repository's layout promises: one distribution, two packages, no shadowed stdlib."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_operator_directory_does_not_shadow_the_standard_library() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(out).parent == Path(sysconfig.get_paths()["stdlib"])


def test_one_distribution_installs_both_packages_and_console_scripts() -> None:
    dist = metadata.distribution("hexagon")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {
        "hexagon-operator": "hexagon_operator.main:main",
        "hexagon-gateway": "hexagon_gateway.main:main",
    }
    import hexagon_gateway
    import hexagon_operator

    assert Path(hexagon_operator.__file__).parent == REPO / "operator" / "hexagon_operator"
    assert Path(hexagon_gateway.__file__).parent == REPO / "gateway_node" / "hexagon_gateway"
    for script in scripts:
        assert shutil.which(script, path=str(Path(sys.executable).parent)), script
