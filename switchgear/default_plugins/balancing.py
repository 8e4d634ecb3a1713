"""Built-in plugin: load balancing across the replicas of one model (``order_backends``).

Strategies (``balancing:`` at the top level or per model; the gateway puts the one in force
in ``ctx.attributes["balancing"]``):

- ``p2c`` (default): power of two choices — two random replicas, the one with the lower
  ``(outstanding + 1) * latency EWMA`` first; the rest follow by the same score.
- ``round_robin``: rotate through the replicas.
- ``weighted``: random order weighted by ``Backend.weight``.
- ``latency``: lowest EWMA first, with 10 % exploration and untried replicas first.

``stats`` is the gateway's backend state; only ``outstanding(id)``, ``ewma(id)`` and
``next_counter(key)`` are used, so any object with those methods works.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from switchgear.plugins.hookspecs import hookimpl
from switchgear.types import Backend, RequestContext

EXPLORATION = 0.1


def _unknown_latency(backends: Sequence[Backend], stats: Any) -> float:
    """Latency assumed for an untried replica: below every known one, so it gets tried soon."""
    known = [e for b in backends if (e := stats.ewma(b.id)) is not None]
    return min(known) / 2 if known else 1.0


def p2c(backends: Sequence[Backend], stats: Any) -> list[Backend]:
    unknown = _unknown_latency(backends, stats)

    def score(b: Backend) -> float:
        e = stats.ewma(b.id)
        return float((stats.outstanding(b.id) + 1) * (unknown if e is None else e))

    order = list(backends)
    random.shuffle(order)  # the two sampled replicas, and random tie-breaks below
    first = order[0] if score(order[0]) <= score(order[1]) else order[1]
    return [first] + sorted((x for x in order if x is not first), key=score)


def round_robin(backends: Sequence[Backend], stats: Any, key: str) -> list[Backend]:
    n = stats.next_counter(key) % len(backends)
    return list(backends[n:]) + list(backends[:n])


def weighted(backends: Sequence[Backend]) -> list[Backend]:
    # Efraimidis–Spirakis: sorting by u**(1/w) gives a weighted random permutation.
    return sorted(backends, key=lambda b: random.random() ** (1.0 / b.weight), reverse=True)


def lowest_latency(backends: Sequence[Backend], stats: Any) -> list[Backend]:
    untried = [b for b in backends if stats.ewma(b.id) is None]
    tried = sorted(
        (b for b in backends if stats.ewma(b.id) is not None), key=lambda b: stats.ewma(b.id)
    )
    order = untried + tried
    if len(order) > 1 and random.random() < EXPLORATION:
        k = random.randrange(len(order))
        order.insert(0, order.pop(k))
    return order


@hookimpl(trylast=True)
def order_backends(
    ctx: RequestContext, backends: Sequence[Backend], stats: Any
) -> list[Backend] | None:
    if len(backends) <= 1:
        return list(backends)
    strategy = ctx.attributes.get("balancing", "p2c")
    if strategy == "round_robin":
        return round_robin(backends, stats, ctx.model)
    if strategy == "weighted":
        return weighted(backends)
    if strategy == "latency":
        return lowest_latency(backends, stats)
    return p2c(backends, stats)
