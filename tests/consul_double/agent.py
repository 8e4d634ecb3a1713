"""A client agent of the double: local services and checks, check runners (HTTP probes, TTL
timers), the DeregisterCriticalServiceAfter reaper and the anti-entropy hop to the catalog
(contract §4, §5)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import aiohttp

from tests.consul_double.definitions import (
    STATUSES,
    LocalCheck,
    LocalService,
    parse_check,
    parse_service,
)
from tests.consul_double.state import CatalogCheck, CatalogService, Datacenter
from tests.consul_double.util import ConsulHTTPError, format_duration

__all__ = ["REAP_INTERVAL", "STATUSES", "Agent", "LocalCheck", "LocalService"]

if TYPE_CHECKING:
    from tests.consul_double.server import ConsulCluster

REAP_INTERVAL = 30.0


class Agent:
    """The local agent on one node; the authority for its services and checks."""

    def __init__(
        self,
        cluster: ConsulCluster,
        dc: Datacenter,
        node: str,
        address: str = "127.0.0.1",
        *,
        default_token: str | None = None,
    ) -> None:
        self.cluster, self.dc, self.node, self.address = cluster, dc, node, address
        self.default_token = default_token
        self.services: dict[str, LocalService] = {}
        self.checks: dict[str, LocalCheck] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._bg: set[asyncio.Task[None]] = set()
        self._sync_pending = False
        self._session: aiohttp.ClientSession | None = None
        self._reaper: asyncio.Task[None] | None = None

    @property
    def clock(self):  # noqa: ANN201 - the cluster's Clock
        return self.cluster.clock

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.dc.upsert_node(self.node, self.address)
        self._reaper = asyncio.create_task(self._reap_loop())

    async def close(self) -> None:
        tasks = [*self._runners.values(), *self._bg] + ([self._reaper] if self._reaper else [])
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._runners.clear()
        if self._session is not None:
            await self._session.close()

    # --- local state changes (from the HTTP routes or the test) ---------------------------

    def register(self, body: Any, *, replace_existing_checks: bool = False) -> LocalService:
        svc, raw_checks = parse_service(body)
        now = self.clock.now()
        parsed = [
            parse_check(c, svc, i + 1, len(raw_checks), now) for i, c in enumerate(raw_checks)
        ]
        checks = [c for c in parsed if c is not None]
        self.services[svc.id] = svc
        keep = {c.check_id for c in checks}
        for cid, old in list(self.checks.items()):
            if old.service_id == svc.id and cid not in keep and replace_existing_checks:
                self._drop_check(cid)
        for chk in checks:
            old = self.checks.get(chk.check_id)
            if old is not None:  # same ID: keep the current status and output (§4.1)
                chk.status, chk.output, chk.critical_since = (
                    old.status,
                    old.output,
                    old.critical_since,
                )
                self._drop_check(chk.check_id)
            self.checks[chk.check_id] = chk
            self._start_runner(chk)
        self.schedule_sync()
        return svc

    def deregister(self, service_id: str) -> None:
        if service_id not in self.services:
            raise ConsulHTTPError(
                404,
                f'Unknown service ID "{service_id}". Ensure that the service ID is passed, not the service name.',
            )
        del self.services[service_id]
        for cid, chk in list(self.checks.items()):
            if chk.service_id == service_id:
                self._drop_check(cid)
        self.schedule_sync()

    def update_check(self, check_id: str, status: str, output: str) -> None:
        chk = self.checks.get(check_id)
        if chk is None:
            raise ConsulHTTPError(
                404,
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
            )
        if chk.type != "ttl":
            raise ConsulHTTPError(500, f'CheckID "{check_id}" does not have associated TTL')
        chk.deadline = self.clock.now() + chk.ttl
        chk.reset.set()
        self._set_status(chk, status, output)

    def force_status(self, check_id: str, status: str | None) -> None:
        """Test control: pin a check's status (None releases it to its runner)."""
        chk = self.checks[check_id]
        chk.forced = status
        if status is not None:
            self._set_status(chk, status, f"forced {status} by the test", force=True)

    def forget_everything(self) -> None:
        """An agent restart with no persisted state: the next sync removes the node's rows."""
        for cid in list(self.checks):
            self._drop_check(cid)
        self.services.clear()
        self.schedule_sync()

    def _set_status(
        self, chk: LocalCheck, status: str, output: str, *, force: bool = False
    ) -> None:
        if chk.forced is not None and not force:
            chk.output = output
            return
        if status == "critical" and chk.status != "critical":
            chk.critical_since = self.clock.now()
        elif status != "critical":
            chk.critical_since = None
        changed = chk.status != status
        chk.status, chk.output = status, output
        if changed:
            self.schedule_sync()

    def _drop_check(self, cid: str) -> None:
        self.checks.pop(cid, None)
        task = self._runners.pop(cid, None)
        if task is not None:
            task.cancel()

    # --- check runners ------------------------------------------------------------------

    def _start_runner(self, chk: LocalCheck) -> None:
        if chk.type == "http":
            self._runners[chk.check_id] = asyncio.create_task(self._http_loop(chk))
        elif chk.type == "ttl":
            chk.deadline = self.clock.now() + chk.ttl  # the timer starts at registration
            self._runners[chk.check_id] = asyncio.create_task(self._ttl_loop(chk))

    async def _http_loop(self, chk: LocalCheck) -> None:
        assert self._session is not None
        while True:
            status, output = await self.probe(chk)
            self._set_status(chk, status, output)
            await self.clock.sleep(chk.interval)

    async def probe(self, chk: LocalCheck) -> tuple[str, str]:
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=max(chk.timeout / self.clock.speed, 0.5))
        headers = {k: ", ".join(v) for k, v in chk.header.items()}
        try:
            async with self._session.request(
                chk.method, chk.http, headers=headers, timeout=timeout
            ) as resp:
                body = (await resp.text(errors="replace"))[:256]
                line = f"HTTP {chk.method} {chk.http}: {resp.status} {resp.reason} Output: {body}"
                if 200 <= resp.status < 300:
                    return "passing", line
                return ("warning" if resp.status == 429 else "critical"), line
        except TimeoutError:
            return (
                "critical",
                f'Get "{chk.http}": context deadline exceeded (Client.Timeout exceeded)',
            )
        except (aiohttp.ClientError, OSError) as exc:
            return "critical", f'Get "{chk.http}": {exc}'

    async def _ttl_loop(self, chk: LocalCheck) -> None:
        while True:
            chk.reset.clear()
            remaining = chk.deadline - self.clock.now()
            if remaining > 0 and await self.clock.wait(chk.reset, remaining):
                continue
            if chk.deadline > self.clock.now():
                continue  # fed while we were waking up
            note = chk.output
            out = (
                "TTL expired"
                if not note
                else f"TTL expired (last output before timeout follows): {note}"
            )
            self._set_status(chk, "critical", out)
            await chk.reset.wait()

    async def _reap_loop(self) -> None:
        """§5.4: every 30 s, deregister services whose check has been critical too long."""
        while True:
            await self.clock.sleep(REAP_INTERVAL)
            self.reap()

    def reap(self) -> None:
        now = self.clock.now()
        for chk in list(self.checks.values()):
            if (
                chk.deregister_after
                and chk.status == "critical"
                and chk.critical_since is not None
                and now - chk.critical_since > chk.deregister_after
                and chk.service_id in self.services
            ):
                self.deregister(chk.service_id)

    # --- anti-entropy ---------------------------------------------------------------------

    def schedule_sync(self) -> None:
        """Schedule the agent→catalog hop; never applied inside the request that caused it."""
        if self._sync_pending:
            return
        self._sync_pending = True
        task = asyncio.create_task(self._sync_later())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _sync_later(self) -> None:
        delay = self.cluster.sync_delay
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        self._sync_pending = False
        self.sync()

    def sync(self, *, full: bool = False) -> bool:
        if not self.dc.reachable:
            return False  # retried when the DC becomes reachable again (cluster.set_reachable)
        self.dc.upsert_node(self.node, self.address)
        services = [
            CatalogService(
                self.node,
                s.id,
                s.name,
                list(s.tags),
                s.address,
                s.port,
                dict(s.meta),
                dict(s.tagged_addresses),
                dict(s.weights),
                s.enable_tag_override,
            )
            for s in self.services.values()
        ]
        checks = []
        for c in self.checks.values():
            svc = self.services.get(c.service_id)
            checks.append(
                CatalogCheck(
                    self.node,
                    c.check_id,
                    c.name,
                    c.status,
                    c.notes,
                    c.output,
                    c.service_id,
                    c.service_name,
                    list(svc.tags) if svc else [],
                    c.type,
                    format_duration(c.interval),
                    format_duration(c.timeout),
                )
            )
        return self.dc.write_node_state(
            self.node, services, checks, replace_all=True, push_output=full
        )
