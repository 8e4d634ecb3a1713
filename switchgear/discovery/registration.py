"""Registering backends with the local Consul agent.

* A worker registers itself through :func:`registration_context` (an aiohttp ``cleanup_ctx``):
  register at start, re-register whenever the agent has forgotten the service (agent restart),
  update ``Meta`` after a hot swap (:meth:`RegistrationContext.refresh`), deregister on clean
  shutdown (SIGTERM runs aiohttp's cleanup).
* External backends (vLLM, TGI, anything OpenAI-compatible or adapter-backed) are registered
  by :func:`register_backend` / :func:`deregister_backend`, used by ``switchgear register`` and
  the gateway's ``POST/DELETE /admin/backends``.

Every registration carries an HTTP check (interval, timeout, DeregisterCriticalServiceAfter)
that the agent runs; new checks start ``critical``, so a backend is routed to only after its
first passing check. What is registered (:class:`ServiceSpec`, Meta rules) is built in
:mod:`switchgear.discovery.service_spec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

import consul
from aiohttp import web

from switchgear.discovery.consul_client import (
    ConsulACLError,
    ErrorKind,
    acl_message,
    classify,
    make_client,
)
from switchgear.discovery.service_spec import (
    ServiceSpec,
    clean_meta,
    external_spec,
    labels,
    worker_spec,
)
from switchgear.settings.consul import ConsulSettings, seconds

log = logging.getLogger("switchgear.discovery.registration")

__all__ = [
    "RegistrationContext",
    "ServiceRegistration",
    "ServiceSpec",
    "clean_meta",
    "deregister_backend",
    "external_spec",
    "register_backend",
    "register_external",
    "registration_context",
    "worker_spec",
]


async def _register(client: Any, spec: ServiceSpec, token: str | None) -> None:
    check = consul.Check.http(
        spec.check_url,
        spec.check_interval,
        timeout=spec.check_timeout,
        deregister=spec.deregister_after,
    )
    try:
        await client.agent.service.register(
            spec.name,
            service_id=spec.service_id,
            address=spec.address or None,
            port=spec.port,
            tags=list(spec.tags),
            meta=dict(spec.meta),
            check=check,
            token=token,
        )
    except Exception as exc:
        if classify(exc) is ErrorKind.ACL:
            raise ConsulACLError(
                acl_message(exc, f"registering {spec.name!r} (needs service:write on it)")
            ) from None
        raise


async def register_backend(
    settings: ConsulSettings, spec: ServiceSpec, *, token: str | None = None
) -> None:
    """Register ``spec`` once with the local agent (raises ConsulACLError on a 403)."""
    client = make_client(settings, token=token)
    try:
        await _register(client, spec, token if token is not None else settings.token)
    finally:
        await client.close()


async def register_external(
    settings: ConsulSettings,
    url: str,
    model: str,
    *,
    service_id: str | None = None,
    protocol: str = "openai",
    meta: Mapping[str, str] | None = None,
    token: str | None = None,
) -> str:
    """Register an external backend (``POST /admin/backends``); returns its service ID.

    Raises ValueError for a bad URL and ConsulACLError on a 403.
    """
    spec = external_spec(settings, url, model, service_id=service_id, protocol=protocol, meta=meta)
    await register_backend(settings, spec, token=token)
    return spec.service_id


async def deregister_backend(
    settings: ConsulSettings, service_id: str, *, token: str | None = None
) -> bool:
    """Deregister ``service_id`` from the local agent; False when the agent does not know it."""
    client = make_client(settings, token=token)
    try:
        return bool(
            await client.agent.service.deregister(service_id, token=token or settings.token)
        )
    except Exception as exc:
        if classify(exc) is ErrorKind.ACL:
            raise ConsulACLError(acl_message(exc, f"deregistering {service_id!r}")) from None
        raise
    finally:
        await client.close()


class ServiceRegistration:
    """A registration kept alive: re-registered when the agent forgets it, removed on stop."""

    def __init__(
        self, settings: ConsulSettings, spec: ServiceSpec, *, token: str | None = None
    ) -> None:
        self.settings, self.spec = settings, spec
        self.token = token if token is not None else settings.token
        self.registrations = 0  # how many times we (re-)registered: visible to tests and metrics
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register now (ConsulACLError on 403; an unreachable agent is retried in the background)."""
        self._client = make_client(self.settings, token=self.token)
        try:
            await self._do_register()
        except ConsulACLError:
            await self._client.close()
            raise
        except Exception as exc:
            log.warning(
                "Consul agent unreachable, registration of %s will be retried: %s",
                self.spec.service_id,
                exc,
            )
        self._task = asyncio.create_task(self._keep_alive())

    async def update_meta(self, meta: Mapping[str, Any]) -> None:
        """Replace Meta (e.g. after a hot swap) and re-register at once; check status is kept."""
        self.spec = replace(self.spec, meta=clean_meta(meta))
        await self._do_register()

    async def ensure_registered(self) -> bool:
        """Re-register if the agent no longer knows the service; True when it had to."""
        services = await self._client.agent.services(token=self.token)
        if self.spec.service_id in (services or {}):
            return False
        log.warning(
            "Consul agent forgot %s (agent restart?); registering again", self.spec.service_id
        )
        await self._do_register()
        return True

    async def stop(self) -> None:
        """Stop the keep-alive loop and deregister (best effort: shutdown must not hang on Consul)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is None:
            return
        try:
            await asyncio.wait_for(
                self._client.agent.service.deregister(self.spec.service_id, token=self.token), 5.0
            )
        except Exception as exc:
            log.warning("could not deregister %s from Consul: %s", self.spec.service_id, exc)
        finally:
            await self._client.close()
            self._client = None

    async def _do_register(self) -> None:
        await _register(self._client, self.spec, self.token)
        self.registrations += 1

    async def _keep_alive(self) -> None:
        interval = seconds(self.settings.resync_interval)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.ensure_registered()
            except Exception as exc:
                log.warning("Consul registration check of %s failed: %s", self.spec.service_id, exc)


class RegistrationContext:
    """``app.cleanup_ctx.append(ctx)``; after startup ``ctx.registration`` is the live registration."""

    def __init__(
        self,
        settings: ConsulSettings,
        info: Callable[[], Mapping[str, Any]],
        address: str,
        port: int,
    ) -> None:
        self.settings, self.info, self.address, self.port = settings, info, address, port
        self.registration: ServiceRegistration | None = None

    async def __call__(self, app: web.Application) -> AsyncIterator[None]:
        reg = ServiceRegistration(
            self.settings, worker_spec(self.settings, self.info(), self.address, self.port)
        )
        await reg.start()
        self.registration = reg
        try:
            yield
        finally:
            self.registration = None
            await reg.stop()

    async def on_swap(self, app: web.Application, report: Mapping[str, Any]) -> None:
        """A worker ``SWAP_LISTENERS`` callback: Meta follows the model after a hot swap."""
        await self.refresh()

    async def refresh(self) -> None:
        """Re-read ``info()`` and update Meta (call after a hot swap)."""
        if self.registration is not None:
            await self.registration.update_meta({**labels(self.settings), **self.info()})


def registration_context(
    consul_settings: ConsulSettings, info: Callable[[], Mapping[str, Any]], address: str, port: int
) -> RegistrationContext:
    """A ``cleanup_ctx`` that registers the worker at ``address:port`` while the app runs."""
    return RegistrationContext(consul_settings, info, address, port)
