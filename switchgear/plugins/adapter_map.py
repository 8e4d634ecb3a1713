"""The protocol → adapter map, collected once through the ``register_adapters`` hook.

Plugins register an adapter per protocol (``register("tgi", adapter)``); the first
registration of a protocol wins, and pluggy calls third-party plugins before the
``trylast`` built-ins. An entry may instead be a factory ``(backend) -> Adapter | None``, for
a protocol whose adapter depends on the backend (the built-in TGI and ``completions``
adapters pick the backend's prompt format).

``adapter_for_backend`` stays for plugins written before the map: when any plugin implements
it, it is asked first. Either way a backend's adapter is resolved once and cached, keyed by
the backend's id, protocol, model, URL and meta, so an upstream attempt costs a dict lookup.
The map is built on the first lookup and again after a plugin is registered or removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import pluggy

from switchgear.plugins.calls import call_hook_sync, first_result_sync
from switchgear.types import Adapter, Backend

if TYPE_CHECKING:
    from switchgear.plugins.hookspecs import AdapterEntry

log = logging.getLogger("switchgear.plugins")

#: Backends whose adapter is remembered; past this the cache starts afresh (ids churn with
#: autoscaling, and a resolution is cheap to repeat).
CACHE_SIZE = 4096


class AdapterMap:
    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.protocols: dict[str, AdapterEntry] = {}
        call_hook_sync(pm, "register_adapters", register=self.register)
        self.ask_plugins = bool(pm.hook.adapter_for_backend.get_hookimpls())
        self._cache: dict[Hashable, Adapter | None] = {}

    def register(self, protocol: str, adapter: AdapterEntry) -> None:
        if protocol in self.protocols:
            log.debug("adapter for protocol %s already registered; later one ignored", protocol)
            return
        self.protocols[protocol] = adapter

    def get(self, backend: Backend) -> Adapter | None:
        """The adapter for ``backend``, or None when no plugin speaks its protocol."""
        key = _key(backend)
        if key is not None and key in self._cache:
            return self._cache[key]
        adapter = self._resolve(backend)
        if key is not None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = adapter
        return adapter

    def _resolve(self, backend: Backend) -> Adapter | None:
        if self.ask_plugins:
            found = first_result_sync(self.pm, "adapter_for_backend", backend=backend)
            if found is not None:
                return found  # type: ignore[no-any-return]
        entry = self.protocols.get(backend.protocol)
        if entry is None or isinstance(entry, Adapter):
            return entry
        return _from_factory(entry, backend)


def _from_factory(factory: Callable[[Backend], Adapter | None], backend: Backend) -> Adapter | None:
    try:
        return factory(backend)
    except Exception:
        log.exception("adapter factory for protocol %s failed; skipped", backend.protocol)
        return None


def _key(backend: Backend) -> Hashable | None:
    try:
        meta = frozenset(backend.meta.items())
    except TypeError:  # a meta value that is not hashable: resolve every time
        return None
    return (backend.id, backend.protocol, backend.model, backend.url, meta)


def adapter_for(pm: pluggy.PluginManager, backend: Backend) -> Adapter | None:
    """The adapter for ``backend`` from ``pm``'s map (built now when it has none yet)."""
    maps: Callable[[], AdapterMap] | None = getattr(pm, "adapter_map", None)
    return (maps() if maps is not None else AdapterMap(pm)).get(backend)
