"""Observe and decide: the operator's view of gateway health, and the heal state machine.

Layers, from pure to I/O:

* ``settings``    - thresholds and timings from ``spec.selfHeal``;
* ``queries``     - PromQL text, result parsing, scrape configs (Kubernetes SD + relabel, or
  HTTP SD served by the operator for Debian's Prometheus, which lacks Kubernetes SD);
* ``samples``     - typed observations and the per-pod sliding window;
* ``verdicts``    - per-pod verdicts and the pipeline check behind ``MetricsAvailable``;
* ``monitor``     - keeps the window between polls, resets it when a pod is replaced;
* ``policy``      - storm rules as a chain of pure checks: which heals may start;
* ``conditions``  - MetricsAvailable / Healing / Degraded inputs and their change Events;
* ``records``     - the persisted heal record (``status.heal``, ``status.healHistory``);
* ``plan``        - the heal state machine's persistence protocol (advance / mark_done);
* ``transitions`` - each step's exit conditions (drain, probe, respawn, ramp, relapse);
* ``actions``     - effects as plain dataclasses, Event reasons;
* ``probe``       - what counts as a valid probe answer;
* ``metrics``     - the operator's own heal metrics in Prometheus text format;
* ``source``      - the one module that talks to Prometheus (never raises for outages).

Everything except ``source`` imports neither ``kubernetes`` nor ``aiohttp`` nor does I/O, so
the decisions are table-tested with virtual time. The executor that turns actions into API
calls (the healer) follows the protocol in ``plan``'s docstring.
"""
