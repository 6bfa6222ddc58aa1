"""The memory between polls: each pod's sliding window, reset when the pod is replaced.

Why: ``samples.record`` and ``verdicts.assess`` are pure functions of a window; something
must hold that window from one poll to the next and notice that a StatefulSet pod with the
same name is a *new* pod (new uid) whose verdicts must not inherit its predecessor's slow
samples - otherwise a freshly respawned pod would look breaching and be healed again. This
class is that something; it does no I/O and takes time only from the observations.
"""

from __future__ import annotations

from collections.abc import Mapping

from hexagon_operator.health.samples import Observation, PodKey, Sample, forget, record
from hexagon_operator.health.settings import HealSettings
from hexagon_operator.health.verdicts import Assessment, assess


class Monitor:
    """Feed it every poll with the pods Kubernetes lists (key -> uid); get verdicts back."""

    def __init__(self, settings: HealSettings) -> None:
        self.settings = settings
        self.window: dict[PodKey, tuple[Sample, ...]] = {}
        self._uids: dict[PodKey, str] = {}

    def update(self, observation: Observation, pods: Mapping[PodKey, str]) -> Assessment:
        replaced = frozenset(key for key, uid in pods.items() if self._uids.get(key, uid) != uid)
        window = forget(self.window, replaced)
        self._uids = dict(pods)
        self.window = record(
            window,
            observation,
            pods=frozenset(pods),
            window_seconds=self.settings.window_seconds,
            # a short window must still hold a full streak of consecutive polls
            min_keep=self.settings.consecutive_breaches,
        )
        return assess(self.window, observation, self.settings, pods=pods)
