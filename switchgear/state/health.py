"""Backend health shared by a fleet: ejections, readmissions, breaker open/close, and the
detector's fallback switches (a model sent along its fallback chain, and back).

Every change a gateway makes to its :class:`~switchgear.proxy.breaker.BackendState`
(``on_change``) is written to two Redis hashes (``<prefix>:ejected``: backend → reason,
``<prefix>:open``: backend → wall time the breaker opened; ``<prefix>:fallback``: model →
reason, from the model target's ``on_change``) and published on the
``<prefix>:health`` channel in one pipeline. Every gateway subscribes and applies the
changes of the others as they arrive (milliseconds after the change).

Order on (re)connect: subscribe first, then write what changed here while Redis was away,
then load both hashes and make the local state match them; so a gateway that starts or
comes back misses nothing and ends where the fleet is. While Redis is down, changes apply
locally only and wait (the latest per backend) for the next connection.

Writes never block a request: ``on_change`` only notes the change and wakes the writer task
(:class:`~switchgear.state.health_changes.HealthChanges`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import orjson

from switchgear.state.health_changes import (
    EJECT,
    FALLBACK,
    OPEN,
    READMIT,
    RESTORE,
    Change,
    HealthChanges,
    HealthTarget,
    ModelTarget,
)
from switchgear.state.store import FAILURES, RedisStore, cancelled_meanwhile

log = logging.getLogger("switchgear.state")


class HealthSync(HealthChanges):
    """Backend health shared over Redis: a pipeline of hash writes and publishes out, a
    subscription in."""

    def __init__(
        self, store: RedisStore, target: HealthTarget, models: ModelTarget | None = None
    ) -> None:
        super().__init__(store.metrics, target, models)
        self.store = store
        self.channel = store.key("health")

    # --- out --------------------------------------------------------------------------------

    async def _write_batch(self, batch: list[Change]) -> None:
        pipe = self.store.client.pipeline(transaction=False)
        ejected, opened = self.store.key("ejected"), self.store.key("open")
        fallback = self.store.key("fallback")
        for c in batch:
            if c.kind == FALLBACK:
                pipe.hset(fallback, c.backend_id, c.reason)
            elif c.kind == RESTORE:
                pipe.hdel(fallback, c.backend_id)
            elif c.kind == EJECT:
                pipe.hset(ejected, c.backend_id, c.reason)
            elif c.kind == READMIT:
                pipe.hdel(ejected, c.backend_id)
                pipe.hdel(opened, c.backend_id)
            elif c.kind == OPEN:
                pipe.hset(opened, c.backend_id, repr(c.at))
            else:
                pipe.hdel(opened, c.backend_id)
            message: dict[str, object] = {"o": self.store.member, "b": c.backend_id}
            message.update(k=c.kind, r=c.reason, t=c.at)
            pipe.publish(self.channel, orjson.dumps(message))
        await self.store.call("health_publish", pipe.execute())

    async def writer(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not self.store.up:
                continue  # the subscriber flushes after it reconnects
            try:
                await self._flush()
            except FAILURES:
                cancelled_meanwhile()

    # --- in ---------------------------------------------------------------------------------

    def _apply(self, data: bytes) -> None:
        try:
            msg: dict[str, Any] = orjson.loads(data)
            if msg["o"] == self.store.member:
                return
            age = max(0.0, time.time() - float(msg["t"]))
            kind = str(msg["k"])
            target = self.models if kind in (FALLBACK, RESTORE) else self.target
            if target is not None:
                target.apply(str(msg["b"]), kind, str(msg.get("r") or ""), age)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed health message on %s", self.channel)
            return
        self.store.metrics.health_events.labels("applied").inc()

    async def _load(self) -> None:
        """Make the local ejections and open breakers match the fleet's."""
        pipe = self.store.client.pipeline(transaction=False)
        pipe.hgetall(self.store.key("ejected"))
        pipe.hgetall(self.store.key("open"))
        pipe.hgetall(self.store.key("fallback"))
        ejected, opened, fallback = await self.store.call("health_load", pipe.execute())
        shared = {k.decode(): v.decode() for k, v in ejected.items()}
        for backend_id, reason in shared.items():
            self.target.apply(backend_id, EJECT, reason)
        for backend_id in set(self.target.ejected_ids()) - set(shared):
            if (backend_id, "ejected") not in self._pending:
                self.target.apply(backend_id, READMIT, "readmitted while away")
        now = time.time()
        for k, v in opened.items():
            self.target.apply(k.decode(), OPEN, "", max(0.0, now - float(v)))
        if self.models is not None:
            self._load_fallbacks({k.decode(): v.decode() for k, v in fallback.items()})

    def _load_fallbacks(self, shared: dict[str, str]) -> None:
        assert self.models is not None
        for model, reason in shared.items():
            self.models.apply(model, FALLBACK, reason)
        for model in self.models.fallback_models() - set(shared):
            if (model, "fallback") not in self._pending:
                self.models.apply(model, RESTORE, "restored while away")

    async def subscriber(self) -> None:
        while True:
            await self.store.wait_up()
            pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
            try:
                await self.store.call("health_subscribe", pubsub.subscribe(self.channel))
                await self._flush()
                await self._load()
                self.synced.set()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    cancelled_meanwhile()
                    if msg is not None and msg.get("type") == "message":
                        self._apply(msg["data"])
            except FAILURES as exc:
                cancelled_meanwhile()
                self.store.failed("health_subscribe", exc)
                self.synced.clear()
            finally:
                with contextlib.suppress(*FAILURES):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
