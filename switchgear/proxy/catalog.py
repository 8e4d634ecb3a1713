"""The models the gateway knows, kept current: config, catalogue, backend meta and Consul KV.

Precedence, lowest first: the built-in model catalogue, backends' metadata (static
``backends[].meta`` and Consul ``Service.Meta``), ``router.catalogue``, ``models.<name>``
(all four through :func:`~switchgear.proxy.families.resolve_models`), then the Consul KV
model catalogue: what a KV entry sets (aliases, fallback chain, context length...) wins over
the config for that model, and an alias KV gives a model wins over the same alias in config,
so one KV write changes routing on every gateway.

The result is published in :attr:`ModelCatalog.infos` and ``app[ALIASES]`` (the same dict
objects, updated in place, so readers may keep a reference) and in the upstream's
:class:`~switchgear.proxy.policy.Policies`. It is rebuilt lazily: :meth:`ModelCatalog.refresh`
compares the registry's version and the KV version with those it was built from, so a
request pays one tuple comparison when nothing changed; :meth:`ModelCatalog.known` (what
``select_model`` sees) is built with it, not per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from switchgear.discovery.base import Registry
from switchgear.proxy.families import model_info, resolve_models
from switchgear.proxy.policy import Policies
from switchgear.settings import Settings
from switchgear.types import ModelInfo

_DEFAULT = ModelInfo(name="")
_KV_FIELDS = (
    "fallback",
    "aliases",
    "context_length",
    "languages",
    "capabilities",
    "cost",
    "prompt_format",
    "supports_continuation",
    "quantization",
)


def overlay(info: ModelInfo, kv: ModelInfo) -> ModelInfo:
    """``info`` with the fields a KV entry sets (non-empty, non-default) replaced by the KV's.

    The KV format does not tell an empty list from an absent one, so an empty list in KV
    leaves the configured one in force; delete the entry to fall back to config entirely.
    """
    changes: dict[str, Any] = {}
    for key in _KV_FIELDS:
        value = getattr(kv, key)
        if value != getattr(_DEFAULT, key):
            changes[key] = value
    if kv.extra:
        changes["extra"] = {**info.extra, **kv.extra}
    return replace(info, **changes)


class ModelCatalog:
    """See the module docstring. ``kv`` holds each discovery source's KV catalogue."""

    def __init__(self, settings: Settings, registry: Registry, policies: Policies) -> None:
        self.settings, self.registry, self.policies = settings, registry, policies
        self.infos: dict[str, ModelInfo] = {}
        self.aliases: dict[str, str] = {}
        self.kv: dict[str, Mapping[str, ModelInfo]] = {}
        self.kv_version = 0
        self._built: tuple[int, int] | None = None
        self._kv_changed: asyncio.Event | None = None
        self._known: Mapping[str, ModelInfo] = MappingProxyType({})
        self.refresh()

    def known(self) -> Mapping[str, ModelInfo]:
        """:attr:`infos` plus every model of the registry, read-only; current as of now."""
        self.refresh()
        return self._known

    def set_kv(self, source: str, models: Mapping[str, ModelInfo]) -> None:
        """A discovery source's KV model catalogue changed (``on_models`` callback)."""
        self.kv[source] = dict(models)
        self.kv_version += 1
        self.refresh()
        if self._kv_changed is not None:
            self._kv_changed.set()
            self._kv_changed = None

    async def wait_kv(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until ``kv_version`` exceeds ``after``; False on timeout (for tests and tools)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.kv_version <= after:
            if self._kv_changed is None:
                self._kv_changed = asyncio.Event()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._kv_changed.wait()
            except TimeoutError:
                return False
        return True

    def refresh(self) -> dict[str, ModelInfo]:
        """Rebuild when the registry or the KV catalogue changed; returns ``infos``."""
        stamp = (self.registry.version, self.kv_version)
        if stamp == self._built:
            return self.infos
        self._built = stamp
        infos = resolve_models(self.settings, self.registry.all_backends())
        kv: dict[str, ModelInfo] = {}
        for models in self.kv.values():
            kv.update(models)
        extra = self.settings.router.catalogue
        for name, entry in kv.items():
            base = infos.get(name) or model_info(name, extra=extra)
            infos[name] = overlay(base, entry)
        aliases = {a: n for n, i in infos.items() for a in i.aliases}
        aliases.update({a: n for n, entry in kv.items() for a in entry.aliases})
        self.infos.clear()
        self.infos.update(infos)
        self.aliases.clear()
        self.aliases.update(aliases)
        self.policies.use(infos)
        known = dict(infos)
        for name in self.registry.models():
            if name not in known:
                known[name] = ModelInfo(name=name)
        self._known = MappingProxyType(known)
        return self.infos
