"""Backend health shared through Consul KV (``state.consul``): the same changes as
:mod:`switchgear.state.health` (ejections, readmissions, breaker open/close, the detector's
fallback switches), kept as one KV entry each and watched with a blocking query.

Layout under the store's root (``<kv_prefix>fleet/<key_prefix>/``)::

    health/ejected/<backend>   {"o": member, "b": backend, "r": reason, "t": wall time}
    health/open/<backend>      the same, ``t`` = when the breaker opened
    health/fallback/<model>    the same, for a model sent along its fallback chain

An ejection, an open breaker or a fallback writes its entry; a readmission deletes the
backend's ``ejected`` and ``open`` entries, a close its ``open`` entry, a restore its
``fallback`` entry. Every gateway watches ``health/`` recursively (one blocking query, the
index rules of contract §3.3): each answer is the whole current state, and the differences
from the previous answer are applied (an entry this gateway wrote, or one it deleted itself,
is not applied again). A blocking query returns as soon as the index moves, so the others see
a change within one round trip after the write.

Order on (re)connect, as with Redis: first write what changed here while Consul was away (the
latest per backend), then read the state and make the local state match it (a backend
ejected here but readmitted meanwhile is readmitted), then watch. While Consul is down,
changes apply locally only and wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from switchgear.discovery.consul_client import Backoff, TokenBucket
from switchgear.settings.consul import seconds
from switchgear.state.consul_store import ConsulStore, key_part
from switchgear.state.health_changes import (
    CLOSE,
    DIMENSION,
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

log = logging.getLogger("switchgear.state")

#: The watch's token bucket: health changes must reach the fleet within a second.
WATCH_BURST, WATCH_RATE = 20, 20.0
_SET = {"ejected": EJECT, "open": OPEN, "fallback": FALLBACK}
_UNSET = {"ejected": READMIT, "open": CLOSE, "fallback": RESTORE}

#: (dimension, backend or model) → the entry's decoded value
Snapshot = dict[tuple[str, str], dict[str, Any]]


class ConsulHealth(HealthChanges):
    """Backend health shared through Consul KV: an entry per change out, a blocking watch in."""

    def __init__(
        self, store: ConsulStore, target: HealthTarget, models: ModelTarget | None = None
    ) -> None:
        super().__init__(store.metrics, target, models)
        self.store = store
        self.prefix = store.key("health") + "/"
        self._deleted: set[tuple[str, str]] = set()  # entries whose last write here deleted them
        self._seen: Snapshot = {}

    # --- out --------------------------------------------------------------------------------

    def _key(self, dimension: str, name: str) -> str:
        return f"{self.prefix}{dimension}/{key_part(name)}"

    async def _write(self, c: Change) -> None:
        kv, token = self.store.client.kv, self.store.token
        if c.kind in (EJECT, OPEN, FALLBACK):
            dim = DIMENSION[c.kind]
            value = orjson.dumps(
                {"o": self.store.member, "b": c.backend_id, "r": c.reason, "t": c.at}
            )
            self._deleted.discard((dim, c.backend_id))
            await kv.put(self._key(dim, c.backend_id), value.decode(), token=token)
            return
        dims = ("ejected", "open") if c.kind == READMIT else (DIMENSION[c.kind],)
        for dim in dims:
            self._deleted.add((dim, c.backend_id))
            await kv.delete(self._key(dim, c.backend_id), token=token)

    async def _write_batch(self, batch: list[Change]) -> None:
        await self.store.call(
            "consul_health_write", asyncio.gather(*(self._write(c) for c in batch))
        )

    async def writer(self) -> None:
        s = self.store
        backoff = Backoff(s.settings.backoff_initial, s.settings.backoff_max)
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._dirty.set()  # kept (the latest per backend) and written again later
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()

    # --- in ---------------------------------------------------------------------------------

    def _snapshot(self, entries: list[dict[str, Any]] | None) -> Snapshot:
        snap: Snapshot = {}
        for e in entries or ():
            dim = str(e.get("Key", ""))[len(self.prefix) :].split("/", 1)[0]
            if dim not in _SET:
                continue
            try:
                value = orjson.loads(e.get("Value") or b"")
                snap[(dim, str(value["b"]))] = value
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("ignoring a malformed health entry %s", e.get("Key"))
        return snap

    def _apply(self, dim: str, name: str, kind: str, reason: str, age: float = 0.0) -> None:
        target = self.models if dim == "fallback" else self.target
        if target is not None:
            target.apply(name, kind, reason, age)
            self.store.metrics.health_events.labels("applied").inc()

    def _set(self, dim: str, name: str, value: dict[str, Any]) -> None:
        age = max(0.0, time.time() - float(value.get("t") or 0.0)) if dim == "open" else 0.0
        self._apply(dim, name, _SET[dim], str(value.get("r") or ""), age)

    def _load(self, snap: Snapshot) -> None:
        """Make the local ejections, open breakers and fallbacks match the fleet's."""
        for (dim, name), value in snap.items():
            self._set(dim, name, value)
        for backend_id in set(self.target.ejected_ids()):
            if ("ejected", backend_id) not in snap and (backend_id, "ejected") not in self._pending:
                self._apply("ejected", backend_id, READMIT, "readmitted while away")
        if self.models is not None:
            for model in self.models.fallback_models():
                if ("fallback", model) not in snap and (model, "fallback") not in self._pending:
                    self._apply("fallback", model, RESTORE, "restored while away")

    def _diff(self, snap: Snapshot) -> None:
        """Apply what the others changed since the previous answer."""
        for (dim, name), value in snap.items():
            self._deleted.discard((dim, name))  # present again: a later removal is news
            if value == self._seen.get((dim, name)) or value.get("o") == self.store.member:
                continue
            if (name, dim) not in self._pending:
                self._set(dim, name, value)
        for dim, name in self._seen.keys() - snap.keys():
            if (dim, name) in self._deleted or (name, dim) in self._pending:
                continue  # this gateway deleted it (or changed it since)
            self._apply(dim, name, _UNSET[dim], "")

    async def watch(self) -> None:
        s = self.store
        backoff = Backoff(s.settings.backoff_initial, s.settings.backoff_max)
        bucket = TokenBucket(WATCH_BURST, WATCH_RATE)
        blocking = seconds(s.settings.wait) * 17 / 16 + 5.0
        index, fresh = 0, True
        while True:
            await bucket.take()
            try:
                if fresh:
                    await self._flush()
                new_index, entries = await s.call(
                    "consul_health_watch",
                    s.client.kv.get(
                        self.prefix,
                        recurse=True,
                        index=str(index) if index else None,
                        wait=s.settings.wait,
                        token=s.token,
                    ),
                    limit_s=blocking,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                index, fresh = 0, True
                self.synced.clear()
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            got = int(new_index or 0)
            index = 0 if got < index else max(got, 1)
            snap = self._snapshot(entries)
            if fresh:
                self._load(snap)
                fresh = False
                self.synced.set()
            else:
                self._diff(snap)
            self._seen = snap
