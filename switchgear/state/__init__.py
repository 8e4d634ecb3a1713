"""State a fleet of gateways shares: rate limits, backend health and detector leadership.

Three forms behind one object, :class:`~switchgear.state.fleet.FleetState`:

* in-process (the embedded default, no ``state`` section): each process keeps its own
  buckets (:mod:`~switchgear.state.local`), its own backend health and leads its own detector;
* Redis (``state: {redis_url: ..., key_prefix: ...}``): GCRA limits in one Lua script per
  check (:mod:`~switchgear.state.limits`), health changes over pub/sub with the current state
  in hashes (:mod:`~switchgear.state.health`), a TTL lock for the detector leader
  (:mod:`~switchgear.state.leader`) and observations relayed to it
  (:mod:`~switchgear.state.observations`);
* Consul (``state.consul: true``, with or without Redis): backend health as KV entries under a
  blocking watch (:mod:`~switchgear.state.consul_health`) and the detector leader as the
  holder of a KV lock taken by a Consul session with a TTL
  (:mod:`~switchgear.state.consul_leader`); rate limits stay on Redis, or local without it.

Faults (:mod:`~switchgear.state.store`, :mod:`~switchgear.state.consul_store`): Redis or
Consul down, slow or restarted never fails a request; every shared piece falls back to its
local form and converges again when they answer. Imports: settings, types and the Consul
client helpers of discovery (the proxy wires this package in).
"""

from switchgear.state.fleet import FleetState
from switchgear.state.metrics import StateMetrics

__all__ = ["FleetState", "StateMetrics"]
