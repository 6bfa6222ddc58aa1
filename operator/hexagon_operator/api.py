"""The HexagonNode API as the operator sees it: names, keys, reasons and typed spec parsing.

Every string that appears on the cluster (group, labels, annotations, condition types, Event
reasons) is defined once here, so the builders, the reconciler and the healer cannot drift
apart. ``parse_spec`` turns the raw ``spec`` mapping into frozen dataclasses whose defaults
equal the CRD's (a unit test applies the CRD's structural defaults and compares), so code and
tests can build specs without an API server having defaulted them first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

GROUP: Final = "hexagon.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "HexagonNode"
PLURAL: Final = "hexagonnodes"
SHORT_NAME: Final = "hxn"

FIELD_MANAGER: Final = "hexagon-operator"

# Labels on every child object and pod.
LABEL_TOPOLOGY: Final = "hexagon.dev/topology"
LABEL_SPOKE: Final = "hexagon.dev/spoke"
LABEL_RING: Final = "hexagon.dev/ring"
LABEL_HEAL_EPOCH: Final = "hexagon.dev/heal-epoch"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
APP_NAME: Final = "hexagon-gateway"
MANAGED_BY: Final = "hexagon-operator"

# Pod readiness gate: Kubernetes counts a pod Ready only once the operator sets this condition.
READINESS_GATE: Final = "hexagon.dev/in-rotation"
# Pod-template annotation: hash of the config parts a running gateway cannot hot-reload.
ANNOTATION_CONFIG_HASH: Final = "hexagon.dev/config-hash"
# ConfigMap annotation: hash of the whole rendered document (what pods are pushed).
ANNOTATION_CONFIG_REVISION: Final = "hexagon.dev/config-revision"
# On the HexagonNode, written by the healer, read by the reconciler (the StatefulSet's only
# writer): the heal epoch the pod template must carry, and a replica count that overrides
# spec.replicas while a whole-node respawn holds the StatefulSet at zero.
ANNOTATION_HEAL_EPOCH: Final = "hexagon.dev/heal-epoch"
ANNOTATION_HEAL_REPLICAS: Final = "hexagon.dev/heal-replicas"
# kopf's own bookkeeping lives under our domain (see main.py).
PERSISTENCE_PREFIX: Final = "hexagon.dev"
FINALIZER: Final = "hexagon.dev/finalizer"

# Gateway config layout in the pod.
CONFIG_KEY: Final = "gateway.yaml"
CONFIG_DIR: Final = "/etc/hexagon"
TOKEN_KEY: Final = "token"
TOKEN_DIR: Final = "/var/run/hexagon"
DATA_PORT: Final = 8080
ADMIN_PORT: Final = 9901

SPOKES: Final = ("north", "northeast", "southeast", "south", "southwest", "west")


class Cond:
    """Condition types. Ready/Progressing/Degraded/SpokeConflict are the reconciler's;
    MetricsAvailable and Healing are the healer's (status.py keeps conditions it does not own)."""

    READY: Final = "Ready"
    PROGRESSING: Final = "Progressing"
    DEGRADED: Final = "Degraded"
    SPOKE_CONFLICT: Final = "SpokeConflict"
    METRICS_AVAILABLE: Final = "MetricsAvailable"
    HEALING: Final = "Healing"


class Reason:
    """CamelCase reasons for conditions and Events, defined once."""

    # conditions
    ALL_REPLICAS_READY: Final = "AllReplicasReady"
    REPLICAS_NOT_READY: Final = "ReplicasNotReady"
    ROLLING_OUT: Final = "RollingOut"
    SCALED_TO_ZERO: Final = "ScaledToZero"
    ROLLOUT_COMPLETE: Final = "RolloutComplete"
    AS_EXPECTED: Final = "AsExpected"
    SPOKE_CONFLICT: Final = "SpokeConflict"
    SPOKE_UNIQUE: Final = "SpokeUnique"
    APPLY_FAILED: Final = "ApplyFailed"
    CONFIG_REJECTED: Final = "ConfigRejected"
    # events
    RECONCILED: Final = "Reconciled"
    CONFIG_PUSHED: Final = "ConfigPushed"
    CONFIG_PUSH_FAILED: Final = "ConfigPushFailed"
    POD_IN_ROTATION: Final = "PodInRotation"
    ADMIN_TOKEN_CREATED: Final = "AdminTokenCreated"
    # healer's events (health/ emits them; defined here so all reasons live in one place)
    POD_ISOLATED: Final = "PodIsolated"
    PROBE_FAILED: Final = "ProbeFailed"
    POD_RESPAWNED: Final = "PodRespawned"
    POD_RESTORED: Final = "PodRestored"
    RESPAWNS_FAILING: Final = "RespawnsFailing"


def heal_replicas(annotations: Mapping[str, str]) -> int | None:
    """The healer's replica override, or None when absent or not a count."""
    raw = str(annotations.get(ANNOTATION_HEAL_REPLICAS, "")).strip()
    return int(raw) if raw.isdigit() else None


def admin_secret_name(topology: str) -> str:
    """The per-topology Secret holding the gateways' admin token (key ``token``)."""
    return f"{topology}-hexagon-admin"


@dataclass(frozen=True, slots=True)
class Resources:
    requests_cpu: str = "100m"
    requests_memory: str = "128Mi"
    limits_cpu: str = ""
    limits_memory: str = "256Mi"


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """The routing part of the gateway config, kept as plain data: the CRD schema validates it
    and the gateway re-validates the whole rendered document, so re-typing it here would only
    add a third copy of the schema."""

    upstreams: tuple[Mapping[str, Any], ...] = ()
    routes: tuple[Mapping[str, Any], ...] = ()
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SelfHealSpec:
    enabled: bool = True
    paused: bool = False
    p99_threshold_ms: int = 800
    error_rate_rise_percent: int = 15
    window_seconds: int = 60
    consecutive_breaches: int = 3
    poll_interval_seconds: int = 5
    probe_timeout_ms: int = 5000
    probe_deadline_seconds: int = 10
    max_unavailable_percent: int = 25
    cooldown_seconds: int = 300


@dataclass(frozen=True, slots=True)
class SloSpec:
    p99_ms: int = 320


@dataclass(frozen=True, slots=True)
class NodeSpec:
    topology: str
    spoke: str
    topology_shape: str = "hexagon"
    ring_level: int = 1
    replicas: int = 2
    image: str = ""
    image_pull_policy: str = "IfNotPresent"
    workers: int = 1
    resources: Resources = field(default_factory=Resources)
    gateway: GatewaySpec = field(default_factory=GatewaySpec)
    self_heal: SelfHealSpec = field(default_factory=SelfHealSpec)
    slo: SloSpec = field(default_factory=SloSpec)


@dataclass(frozen=True, slots=True)
class NodeRef:
    """Identity of one HexagonNode, enough to own children and address it."""

    name: str
    namespace: str
    uid: str
    generation: int = 0


class SpecError(ValueError):
    """A spec the operator cannot act on; the message names the field."""


def _section(raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}.{key}: got {value!r}, expected an object")
    return value


def _int(raw: Mapping[str, Any], key: str, default: int, path: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}.{key}: got {value!r}, expected an integer")
    return int(value)


def _str(raw: Mapping[str, Any], key: str, default: str, path: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise SpecError(f"{path}.{key}: got {value!r}, expected a string")
    return value


def _bool(raw: Mapping[str, Any], key: str, default: bool, path: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{path}.{key}: got {value!r}, expected true or false")
    return value


def _list(raw: Mapping[str, Any], key: str, path: str) -> Sequence[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise SpecError(f"{path}.{key}: got {value!r}, expected a list")
    return value


def parse_spec(raw: Mapping[str, Any]) -> NodeSpec:
    """Typed view of ``spec``; absent fields take the CRD's defaults."""
    p = "spec"
    topology = _str(raw, "topology", "", p)
    spoke = _str(raw, "spoke", "", p)
    if not topology:
        raise SpecError("spec.topology: required, expected the name of the hexagon")
    if spoke not in SPOKES:
        raise SpecError(f"spec.spoke: got {spoke!r}, expected one of {list(SPOKES)}")
    ring = _int(raw, "ringLevel", 1, p)
    if not 0 <= ring <= 2:
        raise SpecError(f"spec.ringLevel: got {ring}, expected 0, 1 or 2")
    replicas = _int(raw, "replicas", 2, p)
    if replicas < 0:
        raise SpecError(f"spec.replicas: got {replicas}, expected an integer >= 0")

    res = _section(raw, "resources", p)
    req = _section(res, "requests", "spec.resources")
    lim = _section(res, "limits", "spec.resources")
    rd = Resources()
    resources = Resources(
        requests_cpu=_str(req, "cpu", rd.requests_cpu, "spec.resources.requests"),
        requests_memory=_str(req, "memory", rd.requests_memory, "spec.resources.requests"),
        limits_cpu=_str(lim, "cpu", rd.limits_cpu, "spec.resources.limits"),
        limits_memory=_str(lim, "memory", rd.limits_memory, "spec.resources.limits"),
    )

    gw = _section(raw, "gateway", p)
    gateway = GatewaySpec(
        upstreams=tuple(_list(gw, "upstreams", "spec.gateway")),
        routes=tuple(_list(gw, "routes", "spec.gateway")),
        trusted_proxies=tuple(str(x) for x in _list(gw, "trustedProxies", "spec.gateway")),
    )

    sh = _section(raw, "selfHeal", p)
    d = SelfHealSpec()
    q = "spec.selfHeal"
    self_heal = SelfHealSpec(
        enabled=_bool(sh, "enabled", d.enabled, q),
        paused=_bool(sh, "paused", d.paused, q),
        p99_threshold_ms=_int(sh, "p99ThresholdMs", d.p99_threshold_ms, q),
        error_rate_rise_percent=_int(sh, "errorRateRisePercent", d.error_rate_rise_percent, q),
        window_seconds=_int(sh, "windowSeconds", d.window_seconds, q),
        consecutive_breaches=_int(sh, "consecutiveBreaches", d.consecutive_breaches, q),
        poll_interval_seconds=_int(sh, "pollIntervalSeconds", d.poll_interval_seconds, q),
        probe_timeout_ms=_int(sh, "probeTimeoutMs", d.probe_timeout_ms, q),
        probe_deadline_seconds=_int(sh, "probeDeadlineSeconds", d.probe_deadline_seconds, q),
        max_unavailable_percent=_int(sh, "maxUnavailablePercent", d.max_unavailable_percent, q),
        cooldown_seconds=_int(sh, "cooldownSeconds", d.cooldown_seconds, q),
    )
    if self_heal.probe_timeout_ms >= self_heal.probe_deadline_seconds * 1000:
        raise SpecError(
            f"spec.selfHeal.probeTimeoutMs: got {self_heal.probe_timeout_ms}, expected below "
            f"probeDeadlineSeconds * 1000 ({self_heal.probe_deadline_seconds * 1000})"
        )
    slo = SloSpec(p99_ms=_int(_section(raw, "slo", p), "p99Ms", SloSpec().p99_ms, "spec.slo"))

    return NodeSpec(
        topology=topology,
        spoke=spoke,
        topology_shape=_str(raw, "topologyShape", "hexagon", p),
        ring_level=ring,
        replicas=replicas,
        image=_str(raw, "image", "", p),
        image_pull_policy=_str(raw, "imagePullPolicy", "IfNotPresent", p),
        workers=_int(raw, "workers", 1, p),
        resources=resources,
        gateway=gateway,
        self_heal=self_heal,
        slo=slo,
    )
