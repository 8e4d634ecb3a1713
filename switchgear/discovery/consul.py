"""Consul discovery: the healthy instances of the model service in every datacenter.

One blocking ``/v1/health/service/<service>?passing`` watch per datacenter, each with its own
index (contract §3.3, §12), feeds :meth:`Registry.replace`; the datacenter order Consul
gives (nearest first) goes to :meth:`Registry.set_datacenters`. When Consul fails, the
registry keeps the last known backends and the source is marked unhealthy (the gateway's
readiness reports degraded) until the watches succeed again.

Instance → :class:`Backend`: ``Service.Meta`` carries ``model`` (required), ``protocol``
(default ``openai``), ``scheme`` (``http``), ``url_path`` (``/v1``) and optional ``weight``;
the host is ``Service.Address`` or, when empty, ``Node.Address``; the datacenter is
``Node.Datacenter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from switchgear.discovery.base import Registry
from switchgear.discovery.consul_client import (
    Backoff,
    ConsulACLError,
    ErrorKind,
    acl_message,
    blocking_watch,
    classify,
    make_client,
)
from switchgear.discovery.consul_kv import ModelCatalogWatch, ModelsCallback
from switchgear.settings.consul import ConsulSettings, seconds
from switchgear.types import Backend

log = logging.getLogger("switchgear.discovery.consul")

SOURCE = "consul"


def backend_from_entry(entry: dict[str, Any], dc: str) -> Backend | None:
    """One ``/v1/health/service`` element as a Backend; None when it names no model."""
    svc, node = entry.get("Service") or {}, entry.get("Node") or {}
    meta = dict(svc.get("Meta") or {})
    model = meta.get("model")
    if not model:
        return None
    host = svc.get("Address") or node.get("Address") or ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    path = meta.get("url_path", "/v1")
    url = f"{meta.get('scheme', 'http')}://{host}:{svc.get('Port', 0)}{path}".rstrip("/")
    try:
        weight = float(meta.get("weight") or (svc.get("Weights") or {}).get("Passing") or 1)
    except ValueError:
        weight = 1.0
    datacenter = node.get("Datacenter") or dc
    meta.setdefault("node", node.get("Node", ""))
    meta.setdefault("service_id", svc.get("ID", ""))
    return Backend(
        id=f"{svc.get('ID')}@{datacenter}",
        model=model,
        url=url,
        datacenter=datacenter,
        weight=weight,
        protocol=meta.get("protocol", "openai"),
        source=SOURCE,
        meta=meta,
    )


def backends_from_entries(entries: Iterable[dict[str, Any]], dc: str) -> tuple[Backend, ...]:
    out = [b for b in (backend_from_entry(e, dc) for e in entries) if b is not None]
    return tuple(sorted(out, key=lambda b: b.id))


class ConsulDiscovery:
    """Discovery source ``consul``; see the module docstring. Run it with :meth:`run`."""

    name = SOURCE

    def __init__(self, settings: ConsulSettings, *, token: str | None = None) -> None:
        self.settings = settings
        self.token = token if token is not None else settings.token
        self.local_datacenter: str | None = settings.datacenter
        self.datacenters: tuple[str, ...] = ()
        self.catalog = ModelCatalogWatch(settings, token=self.token)
        self._by_dc: dict[str, tuple[Backend, ...]] = {}
        self._errors: dict[str, str] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._published: tuple[Any, ...] | None = None
        self._registry: Registry | None = None

    # --- public seams ---------------------------------------------------------------------

    def on_models(self, callback: ModelsCallback) -> Callable[[], None]:
        """Subscribe to the KV model catalogue (aliases, fallback chains); returns unsubscribe."""
        return self.catalog.subscribe(callback)

    async def preflight(self) -> None:
        """Check the token once, at start: raises :class:`ConsulACLError` with a clear message
        on a 403. An unreachable agent is not an error here (the gateway starts degraded)."""
        client = make_client(self.settings, token=self.token)
        try:
            await self._check(client)
        finally:
            await client.close()

    async def run(self, registry: Registry) -> None:
        """Keep the registry's ``consul`` slice current until cancelled."""
        self._registry = registry
        client = make_client(self.settings, token=self.token)
        kv_task: asyncio.Task[None] | None = None
        try:
            await self._check(client)
            backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
            while True:
                try:
                    await self._refresh_datacenters(client, registry)
                    backoff.reset()
                    delay = seconds(self.settings.datacenter_refresh)
                except ConsulACLError:
                    raise
                except Exception as exc:
                    self._errors["*"] = (
                        f"Consul agent at {self.settings.host}:{self.settings.port}: {exc}"
                    )
                    self._publish()
                    delay = backoff.next_delay()
                if (
                    kv_task is None
                    and self.settings.kv_prefix is not None
                    and self.local_datacenter
                ):
                    kv_task = asyncio.create_task(self.catalog.run(client, self.local_datacenter))
                await asyncio.sleep(delay)
        finally:
            tasks = [*self._watches.values()] + ([kv_task] if kv_task else [])
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self._watches.clear()
            await client.close()

    # --- internals ------------------------------------------------------------------------

    async def _check(self, client: Any) -> None:
        try:
            await client.health.service(
                self.settings.service, passing=True, dc=self.settings.datacenter, token=self.token
            )
        except Exception as exc:
            if classify(exc) is ErrorKind.ACL:
                raise ConsulACLError(
                    acl_message(
                        exc,
                        f"reading service {self.settings.service!r} (needs service:read and node:read)",
                    )
                ) from None
            return  # unreachable: reported by run() as degraded, not fatal
        if self.settings.kv_prefix is not None:
            await self.catalog.check(client, self.settings.datacenter)

    async def _refresh_datacenters(self, client: Any, registry: Registry) -> None:
        order = list(await client.catalog.datacenters())
        if self.local_datacenter is None and order:
            self.local_datacenter = order[0]  # the answering DC sorts first (RTT 0)
        wanted = [
            d for d in order if self.settings.datacenters is None or d in self.settings.datacenters
        ]
        self._errors.pop("*", None)
        if tuple(wanted) != self.datacenters:
            log.info(
                "Consul datacenters (nearest first): %s; local %s", wanted, self.local_datacenter
            )
            self.datacenters = tuple(wanted)
            registry.set_datacenters(wanted, local=self.local_datacenter)
        for dc in wanted:
            if dc not in self._watches:
                self._watches[dc] = asyncio.create_task(self._watch(client, dc))
        for dc in list(self._watches):
            if dc not in wanted:
                self._watches.pop(dc).cancel()
                self._by_dc.pop(dc, None)
                self._errors.pop(dc, None)
        self._publish()

    async def _watch(self, client: Any, dc: str) -> None:
        s = self.settings

        def fetch(index: str | None) -> Any:
            return client.health.service(
                s.service, index=index, wait=s.wait, passing=True, dc=dc, token=self.token
            )

        def on_error(exc: Exception, kind: ErrorKind) -> None:
            if kind is ErrorKind.NO_PATH:
                # Configuration, not an outage: the DC left the federation. Its instances are
                # unreachable through Consul, so stop routing there; retry slowly.
                self._by_dc.pop(dc, None)
            first = dc not in self._errors
            self._errors[dc] = f"{dc}: {exc}"
            # Warn once per outage, not once per retry; recovery is logged below.
            (log.warning if first else log.debug)(
                "Consul watch of %s in %s failed (%s): %s", s.service, dc, kind.value, exc
            )
            self._publish()

        def on_data(entries: Any) -> None:
            if self._errors.pop(dc, None) is not None:
                log.info("Consul watch of %s in %s recovered", s.service, dc)
            self._by_dc[dc] = backends_from_entries(entries or [], dc)
            self._publish()

        await blocking_watch(s, fetch, on_data, on_error)

    def _publish(self) -> None:
        """Replace the registry slice when backends or health changed (a wake-up is not a change)."""
        if self._registry is None:
            return
        backends = tuple(b for dc in self.datacenters for b in self._by_dc.get(dc, ()))
        detail = "; ".join(self._errors[k] for k in sorted(self._errors))
        state = (backends, not self._errors, detail)
        if state == self._published:
            return
        self._published = state
        self._registry.replace(SOURCE, backends, healthy=not self._errors, detail=detail)
