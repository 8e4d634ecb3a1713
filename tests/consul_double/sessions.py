"""Sessions of one datacenter and the KV locks they hold (Consul's session HTTP API reference,
``/v1/session/*``, and the ``acquire``/``release`` parameters of KV ``PUT``, contract §9.2).

* A session belongs to a registered node and lists node checks (default ``serfHealth``); it
  cannot be created while one of them is missing or critical, and it is invalidated when one
  goes critical.
* ``TTL`` (10 s to 24 h; the server's ``session_ttl_min``, :attr:`SessionTable.ttl_min`, may
  lower the bound as Consul's own setting does): a session not renewed is invalidated, as by
  Consul, up to **twice** the TTL after its last renewal (create or renew), not before the TTL.
  Renewal is no Raft write: it bumps no index.
* Invalidation (destroy, TTL expiry, failed check) is a write: the DC index moves, held locks
  are released (``Behavior: release``, the default: ``Session`` cleared, ``LockIndex`` kept) or
  their keys deleted (``delete``), and each such key refuses ``acquire`` for the session's
  ``LockDelay`` (default 15 s) of clock time.
* ``acquire``: ``false`` while another session holds the key or its lock delay runs; the
  holder may acquire again (value updated, ``LockIndex`` unchanged); a new holder increments
  ``LockIndex``. An unknown session is a 500 (``invalid session``). ``release``: ``false``
  unless that session holds the key; the value is written and the lock cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.consul_double.state import SERF_CHECK, KVEntry
from tests.consul_double.util import ConsulHTTPError

if TYPE_CHECKING:
    from tests.consul_double.blocking import Clock
    from tests.consul_double.state import Datacenter

TTL_MIN, TTL_MAX = 10.0, 86400.0
TTL_MULTIPLIER = 2  # Consul's SessionTTLMultiplier: expiry is lazy, up to 2 × TTL
DEFAULT_LOCK_DELAY = 15.0


@dataclass(slots=True)
class Session:
    id: str
    node: str
    name: str = ""
    lock_delay: float = DEFAULT_LOCK_DELAY
    behavior: str = "release"
    ttl: str = ""
    ttl_s: float = 0.0
    node_checks: list[str] = field(default_factory=lambda: [SERF_CHECK])
    service_checks: list[dict[str, Any]] | None = None
    create_index: int = 0
    modify_index: int = 0
    expires: float | None = None  # clock time of invalidation (None: no TTL)

    def json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": round(self.lock_delay * 1e9),  # nanoseconds, as Consul renders it
            "Behavior": self.behavior,
            "TTL": self.ttl,
            "NodeChecks": self.node_checks or None,
            "ServiceChecks": self.service_checks,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


class SessionTable:
    """The sessions of one DC, their TTL timer and the lock delays of released keys."""

    def __init__(self, dc: Datacenter, clock: Clock) -> None:
        self.dc, self.clock = dc, clock
        self.sessions: dict[str, Session] = {}
        self.table_index = 0
        self.lock_delays: dict[str, float] = {}  # key → clock time until which acquire fails
        self.ttl_min = TTL_MIN
        self._timer: asyncio.Task[None] | None = None
        self._rearm = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------

    def create(self, session: Session) -> Session:
        node = self.dc.nodes.get(session.node)
        if node is None:
            raise ConsulHTTPError(500, "Missing node registration")
        for check_id in session.node_checks:
            chk = self.dc.checks.get((session.node, check_id))
            if chk is None:
                raise ConsulHTTPError(500, f"Missing check '{check_id}' registration")
            if chk.status == "critical":
                raise ConsulHTTPError(500, f"Check '{check_id}' is in critical state")
        idx = self.dc.bump()
        session.create_index = session.modify_index = idx
        self.sessions[session.id] = session
        self.table_index = idx
        self._arm(session)
        self.dc.notify()
        return session

    def renew(self, session_id: str) -> Session | None:
        session = self.sessions.get(session_id)
        if session is not None:
            self._arm(session)
        return session

    def _arm(self, session: Session) -> None:
        if session.ttl_s:
            session.expires = self.clock.now() + session.ttl_s * TTL_MULTIPLIER
            self._rearm.set()
            if self._timer is None:
                self._timer = asyncio.create_task(self._expire_loop())

    def invalidate(self, session_id: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        idx = self.dc.bump()
        now = self.clock.now()
        for key, e in list(self.dc.kv.items()):
            if e.session != session_id:
                continue
            if session.lock_delay > 0:
                self.lock_delays[key] = now + session.lock_delay
            if session.behavior == "delete":
                del self.dc.kv[key]
                self.dc.kv_tombstones[key] = idx
            else:
                e.session, e.modify_index = "", idx
        self.dc.kv_table_index = idx
        self.table_index = idx
        self.dc.notify()
        return True

    def node_failed(self, node: str, check_id: str = SERF_CHECK) -> None:
        for s in list(self.sessions.values()):
            if s.node == node and check_id in s.node_checks:
                self.invalidate(s.id)

    async def _expire_loop(self) -> None:
        while True:
            self._rearm.clear()
            deadlines = [s.expires for s in self.sessions.values() if s.expires is not None]
            now = self.clock.now()
            for s in list(self.sessions.values()):
                if s.expires is not None and s.expires <= now:
                    self.invalidate(s.id)
            if not deadlines:
                await self._rearm.wait()
                continue
            remaining = min(deadlines) - now
            if remaining > 0:
                await self.clock.wait(self._rearm, remaining)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None

    # --- KV locks -------------------------------------------------------------------------

    def acquire(self, key: str, value: bytes, flags: int, session_id: str) -> bool:
        if self.lock_delays.get(key, float("-inf")) > self.clock.now():
            return False
        if session_id not in self.sessions:
            raise ConsulHTTPError(500, f'invalid session "{session_id}"')
        cur = self.dc.kv.get(key)
        if cur is not None and cur.session not in ("", session_id):
            return False
        idx = self.dc.bump()
        if cur is None:
            self.dc.kv[key] = KVEntry(key, value, flags, idx, idx, 1, session_id)
        else:
            if cur.session != session_id:
                cur.lock_index += 1
            cur.value, cur.flags, cur.modify_index, cur.session = value, flags, idx, session_id
        self.dc.kv_tombstones.pop(key, None)
        self.dc.kv_table_index = idx
        self.dc.notify()
        return True

    def release(self, key: str, value: bytes, flags: int, session_id: str) -> bool:
        cur = self.dc.kv.get(key)
        if cur is None or cur.session != session_id or not session_id:
            return False
        idx = self.dc.bump()
        cur.value, cur.flags, cur.modify_index, cur.session = value, flags, idx, ""
        self.dc.kv_table_index = idx
        self.dc.notify()
        return True


def table_of(dc: Datacenter, clock: Clock) -> SessionTable:
    """The DC's session table (made on first use)."""
    table: SessionTable | None = getattr(dc, "session_table", None)
    if table is None:
        table = SessionTable(dc, clock)
        dc.session_table = table  # type: ignore[attr-defined]
    return table


def new_session(node: str) -> Session:
    return Session(id=str(uuid.uuid4()), node=node)
