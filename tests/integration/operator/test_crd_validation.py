"""The API server refuses every invalid HexagonNode, with a message that names the field.

A table of manifests (a valid node with one thing broken) is sent to the real kube-apiserver
with the real CRD installed (`kubectl apply --dry-run=server`, so nothing is stored and all
validation still runs: schema, CEL rules, list-map uniqueness, strict field validation).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.operator.opkube import KubeApi, install_crd, kubectl

pytestmark = pytest.mark.controlplane


def valid_node(name: str = "n1") -> dict[str, Any]:
    return {
        "apiVersion": "hexagon.dev/v1alpha1",
        "kind": "HexagonNode",
        "metadata": {"name": name},
        "spec": {
            "topology": "demo",
            "spoke": "north",
            "gateway": {
                "upstreams": [
                    {"name": "api", "endpoints": [{"address": "127.0.0.1:9000"}]},
                    {"name": "api-v2", "endpoints": [{"address": "127.0.0.1:9001"}]},
                ],
                "routes": [
                    {
                        "name": "api",
                        "match": {"pathPrefix": "/api"},
                        "upstream": "api",
                        "middlewares": [{"type": "requestId"}],
                    }
                ],
            },
        },
    }


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(node: dict[str, Any]) -> None:
        keys = path.split(".")
        target: Any = node
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        if isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(node: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = node
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


def _route(**fields: Any) -> dict[str, Any]:
    return {"name": "r2", "match": {"pathPrefix": "/r2"}, "upstream": "api", **fields}


def _add_route(route: dict[str, Any]) -> Mutation:
    return lambda n: n["spec"]["gateway"]["routes"].append(route)


def _middleware(mw: dict[str, Any]) -> Mutation:
    return lambda n: n["spec"]["gateway"]["routes"][0]["middlewares"].append(mw)


CASES = [
    pytest.param(_drop("spec.topology"), ["spec.topology", "Required value"], id="no-topology"),
    pytest.param(_set("spec.spoke", "up"), ["spec.spoke", 'Unsupported value: "up"'], id="spoke"),
    pytest.param(
        _set("spec.ringLevel", 3), ["spec.ringLevel", "less than or equal to 2"], id="ring"
    ),
    pytest.param(
        _set("spec.replicas", -1), ["spec.replicas", "greater than or equal to 0"], id="rep"
    ),
    pytest.param(_set("spec.topologyShape", "square"), ["spec.topologyShape"], id="shape"),
    pytest.param(_set("spec.topology", "Demo"), ["spec.topology", "should match"], id="topo-name"),
    pytest.param(_set("spec.topology", "t" * 41), ["spec.topology", "Too long"], id="topo-long"),
    pytest.param(
        _set("spec.selfHeal", {"probeTimeoutMs": 10000, "probeDeadlineSeconds": 10}),
        ["spec.selfHeal.probeTimeoutMs", "must be below spec.selfHeal.probeDeadlineSeconds"],
        id="probe-timeout-not-below-deadline",
    ),
    pytest.param(
        _set("spec.selfHeal", {"windowSeconds": 10, "pollIntervalSeconds": 5}),
        ["spec.selfHeal.windowSeconds", "pollIntervalSeconds * consecutiveBreaches"],
        id="window-shorter-than-breach-polls",
    ),
    pytest.param(
        _set("spec.slo", {"p99Ms": 900}),
        ["spec.selfHeal.p99ThresholdMs", "at least spec.slo.p99Ms"],
        id="heal-threshold-below-slo",
    ),
    pytest.param(
        _set("spec.selfHeal", {"errorRateRisePercent": 0}),
        ["spec.selfHeal.errorRateRisePercent", "greater than or equal to 1"],
        id="error-rise-zero",
    ),
    pytest.param(
        _add_route(_route(upstream="nope")),
        ["spec.gateway.routes", 'no upstream named "nope"'],
        id="route-unknown-upstream",
    ),
    pytest.param(
        _add_route(_route(name="api")),
        ["spec.gateway.routes[1]", "Duplicate value"],
        id="duplicate-route-name",
    ),
    pytest.param(
        lambda n: n["spec"]["gateway"]["upstreams"].append(
            {"name": "api", "endpoints": [{"address": "127.0.0.1:1"}]}
        ),
        ["spec.gateway.upstreams[2]", "Duplicate value"],
        id="duplicate-upstream-name",
    ),
    pytest.param(
        _add_route(_route(match={"pathPrefix": "/a", "path": "/a"})),
        ["spec.gateway.routes[1].match", "exactly one of pathPrefix, path, regex"],
        id="match-two-kinds",
    ),
    pytest.param(
        _add_route(_route(match={"methods": ["GET"]})),
        ["spec.gateway.routes[1].match", "exactly one of pathPrefix, path, regex"],
        id="match-no-path",
    ),
    pytest.param(
        _add_route(_route(match={"pathPrefix": "api"})),
        ["spec.gateway.routes[1].match.pathPrefix", "should match '^/'"],
        id="prefix-without-slash",
    ),
    pytest.param(
        _add_route(_route(match={"pathPrefix": "/a", "methods": ["GET", "GET"]})),
        ["spec.gateway.routes[1].match.methods[1]", "Duplicate value"],
        id="duplicate-method",
    ),
    pytest.param(
        _add_route(
            _route(
                match={"pathPrefix": "/a", "headers": [{"name": "x", "value": "1", "regex": "1"}]}
            )
        ),
        ["spec.gateway.routes[1].match.headers[0]", "set value or regex, not both"],
        id="header-value-and-regex",
    ),
    pytest.param(
        _middleware({"type": "jwt", "issuer": "https://i"}),
        ["spec.gateway.routes[0].middlewares[1]", "jwt middleware needs algorithms"],
        id="jwt-without-algorithms",
    ),
    pytest.param(
        _middleware({"type": "rateLimit", "requestsPerSecond": 1, "issuer": "https://i"}),
        ["spec.gateway.routes[0].middlewares[1]", "jwt options", "not valid for type rateLimit"],
        id="option-of-another-type",
    ),
    pytest.param(
        _middleware({"type": "rateLimit", "requestsPerSecond": 0}),
        ["spec.gateway.routes[0].middlewares[1].requestsPerSecond", "greater than 0"],
        id="rate-zero",
    ),
    pytest.param(
        _middleware({"type": "canary", "upstream": "ghost", "weight": 10}),
        ["spec.gateway.routes", "every canary must name an upstream"],
        id="canary-unknown-upstream",
    ),
    pytest.param(
        _middleware({"type": "lua"}),
        ["spec.gateway.routes[0].middlewares[1].type", 'Unsupported value: "lua"'],
        id="unknown-middleware",
    ),
    pytest.param(
        _set("spec.gateway.trustedProxies", ["10.0.0.0/8", "proxy.local"]),
        ["spec.gateway.trustedProxies[1]", "proxy.local is neither an IP address nor a CIDR"],
        id="trusted-proxy-not-cidr",
    ),
    pytest.param(
        _set("spec.gateway.upstreams.0.timeouts", {"connectMs": 5000, "totalMs": 1000}),
        ["spec.gateway.upstreams[0].timeouts", "must not exceed totalMs"],
        id="connect-timeout-above-total",
    ),
    pytest.param(
        _set("spec.gateway.upstreams.0.endpoints", [{"address": "no-port"}]),
        ["spec.gateway.upstreams[0].endpoints[0].address", "should match"],
        id="endpoint-without-port",
    ),
    pytest.param(
        _set("spec.gateway.upstreams.0.endpoints", []),
        ["spec.gateway.upstreams[0].endpoints", "should have at least 1 items"],
        id="upstream-without-endpoints",
    ),
    pytest.param(
        lambda n: n["spec"]["gateway"].__setitem__(
            "routes", [_route(name=f"r{i}", match={"pathPrefix": f"/{i}"}) for i in range(65)]
        ),
        ["spec.gateway.routes", "must have at most 64 items"],
        id="too-many-routes",
    ),
    pytest.param(
        _set("spec.resources", {"requests": {"cpu": "lots"}}),
        ["spec.resources.requests.cpu", "should match"],
        id="cpu-not-a-quantity",
    ),
    pytest.param(_set("spec.colour", "blue"), ['unknown field "spec.colour"'], id="unknown-field"),
]


def check_refused(
    kubeconfig: Path | str, namespace: str, mutate: Mutation, expected: list[str]
) -> str:
    node = valid_node()
    mutate(node)
    done = kubectl(kubeconfig, "apply", "--dry-run=server", "-n", namespace, "-f", "-",
                   stdin=yaml.safe_dump(node))  # fmt: skip
    assert done.returncode != 0, f"accepted: {done.stdout}"
    for text in expected:
        assert text in done.stderr, f"{text!r} not in {done.stderr!r}"
    return done.stderr


@pytest.fixture
def crd_namespace(kube_api: KubeApi) -> str:
    install_crd(kube_api.kubeconfig)
    return kube_api.namespace("crd")


def test_valid_node_is_accepted(kube_api: KubeApi, crd_namespace: str) -> None:
    done = kubectl(kube_api.kubeconfig, "apply", "--dry-run=server", "-n", crd_namespace, "-f", "-",
                   stdin=yaml.safe_dump(valid_node()))  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("mutate", "expected"), CASES)
def test_invalid_node_is_refused(
    kube_api: KubeApi, crd_namespace: str, mutate: Mutation, expected: list[str]
) -> None:
    print(check_refused(kube_api.kubeconfig, crd_namespace, mutate, expected))


def test_spoke_is_immutable(kube_api: KubeApi, crd_namespace: str) -> None:
    node = valid_node("moving")
    created = kubectl(kube_api.kubeconfig, "apply", "-n", crd_namespace, "-f", "-",
                      stdin=yaml.safe_dump(node))  # fmt: skip
    assert created.returncode == 0, created.stderr
    moved = copy.deepcopy(node)
    moved["spec"]["spoke"] = "south"
    done = kubectl(kube_api.kubeconfig, "apply", "-n", crd_namespace, "-f", "-",
                   stdin=yaml.safe_dump(moved))  # fmt: skip
    assert done.returncode != 0
    assert "spec.spoke" in done.stderr and "immutable" in done.stderr, done.stderr


def test_defaults_are_applied(kube_api: KubeApi, crd_namespace: str) -> None:
    node = valid_node("defaults")
    created = kubectl(kube_api.kubeconfig, "apply", "-n", crd_namespace, "-f", "-",
                      stdin=yaml.safe_dump(node))  # fmt: skip
    assert created.returncode == 0, created.stderr
    got = yaml.safe_load(
        kubectl(
            kube_api.kubeconfig, "get", "hxn", "defaults", "-n", crd_namespace, "-o", "yaml"
        ).stdout
    )
    spec = got["spec"]
    assert (spec["ringLevel"], spec["replicas"], spec["topologyShape"]) == (1, 2, "hexagon")
    assert spec["selfHeal"]["p99ThresholdMs"] == 800 and spec["slo"]["p99Ms"] == 320
    assert spec["gateway"]["upstreams"][0]["timeouts"]["totalMs"] == 30000


def test_examples_are_accepted(kube_api: KubeApi, crd_namespace: str) -> None:
    examples = Path(__file__).resolve().parents[3] / "crds" / "examples"
    done = kubectl(kube_api.kubeconfig, "apply", "--dry-run=server", "-n", crd_namespace,
                   "-f", str(examples))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("created (server dry run)") == 7, done.stdout
