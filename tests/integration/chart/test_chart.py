"""The Helm chart: lint-clean, CRDs identical to crds/, strict values, sane rendered objects."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testenv.paths import binary

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "hexagon"
KUBE_VERSION = "1.33.13"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([binary("helm"), *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stderr}")
    return done


def render(*sets: str) -> list[dict[str, Any]]:
    args = ["template", "hx", str(CHART), "-n", "hexagon-system", "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_chart_crds_are_identical_to_crds_directory() -> None:
    ours = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart == ours, "charts/hexagon/crds must hold exactly the files of crds/"
    for name in ours:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/hexagon/crds/{name} differs from crds/{name}: run `make chart-crds`"
        )


def test_helm_lint_is_clean() -> None:
    out = helm("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION)
    assert "0 chart(s) failed" in out.stdout


def test_default_render_has_one_operator_rbac_and_bundled_prometheus() -> None:
    docs = render()
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    assert set(deployments) == {"hx-hexagon-operator", "hx-hexagon-prometheus"}
    operator = deployments["hx-hexagon-operator"]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["HEXAGON_PROMETHEUS_URL"] == "http://hx-hexagon-prometheus.hexagon-system.svc:9090"
    pod = operator["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    prom_config = yaml.safe_load(by_kind(docs, "ConfigMap")[0]["data"]["prometheus.yml"])
    sd = prom_config["scrape_configs"][0]["http_sd_configs"][0]["url"]
    assert sd == "http://hx-hexagon-operator.hexagon-system.svc:8081/sd/gateways"
    assert by_kind(docs, "Pod")[0]["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_rbac_grants_what_healing_needs_and_no_wildcards() -> None:
    (role,) = by_kind(render(), "ClusterRole")
    grants = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {"patch"} <= grants[("", "pods/status")]
    assert {"delete"} <= grants[("", "pods")]
    assert {"patch"} <= grants[("hexagon.dev", "hexagonnodes/status")]
    assert {"create"} <= grants[("", "events")]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]


def test_existing_prometheus_by_url_drops_the_bundled_one() -> None:
    docs = render("prometheus.bundled=false", "prometheus.url=http://prom.monitoring:9090")
    assert [d["metadata"]["name"] for d in by_kind(docs, "Deployment")] == ["hx-hexagon-operator"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        pytest.param(["prometheus.url=http://x:9090"], "choose one", id="bundled-and-url"),
        pytest.param(
            ["prometheus.bundled=false"], "prometheus.url is required", id="no-prometheus"
        ),
        pytest.param(
            ["prometheus.bogus=1"], "Additional property bogus is not allowed", id="unknown-key"
        ),
        pytest.param(
            ["prometheus.scrapeIntervalSeconds=30"], "scrapeIntervalSeconds", id="scrape-too-slow"
        ),
        pytest.param(["operator.logLevel=loud"], "logLevel", id="bad-log-level"),
    ],
)
def test_contradictory_or_invalid_values_are_refused(sets: list[str], message: str) -> None:
    args = ["template", "hx", str(CHART), "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    done = helm(*args, check=False)
    assert done.returncode != 0
    assert message in done.stderr
