"""Observe and decide: the operator's view of gateway health, and the heal state machine.

Layers, from pure to I/O:

* ``queries``  - PromQL text and the Prometheus scrape/relabel config (pure);
* ``samples``  - typed observations and the per-pod sliding window (pure);
* ``verdicts`` - per-pod verdicts and the pipeline check behind ``MetricsAvailable`` (pure);
* ``policy``   - storm rules as a chain of pure checks: which heals may start (pure);
* ``plan``     - the persisted heal state machine: record + facts -> record, actions (pure);
* ``source``   - the one module that talks to Prometheus (I/O, never raises for outages).

Everything except ``source`` imports neither ``kubernetes`` nor ``aiohttp`` nor does I/O, so
the decisions are table-tested with virtual time.
"""
