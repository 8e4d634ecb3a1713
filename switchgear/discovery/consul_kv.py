"""The model catalogue kept in Consul KV: aliases and fallback chains that one write changes
on every gateway.

The key ``<kv_prefix><kv_models_key>`` (default ``switchgear/models``) holds JSON::

    {"qwen2-7b": {"fallback": ["qwen2-1.5b"], "aliases": ["chat", "default"],
                  "context_length": 32768, "languages": ["en", "zh"]}}

Each entry becomes a :class:`~switchgear.types.ModelInfo` (``name`` = the key; unknown fields
go to ``extra``). Consumers subscribe with :meth:`ModelCatalogWatch.subscribe`; the callback
gets the whole mapping ``{model: ModelInfo}`` each time it changes (an empty mapping when the
key is deleted). A value that is not valid JSON of that shape is logged and ignored: the last
good catalogue stays in force.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from switchgear.discovery.consul_client import (
    ConsulACLError,
    ErrorKind,
    acl_message,
    blocking_watch,
    classify,
)
from switchgear.settings.consul import ConsulSettings
from switchgear.types import ModelInfo

log = logging.getLogger("switchgear.discovery.consul")

ModelsCallback = Callable[[Mapping[str, ModelInfo]], None]
_KNOWN = (
    "context_length",
    "capabilities",
    "cost",
    "prompt_format",
    "supports_continuation",
    "quantization",
)


def parse_models(raw: bytes | None) -> dict[str, ModelInfo]:
    """The KV value as ``{model: ModelInfo}``; raises ValueError when it has the wrong shape."""
    if not raw:
        return {}
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(
            "the value must be a JSON object {model: {fallback: [...], aliases: [...]}}"
        )
    out: dict[str, ModelInfo] = {}
    for name, spec in data.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{name}: expected an object")

        def strings(key: str, spec: dict[str, Any] = spec, name: str = name) -> tuple[str, ...]:
            value = spec.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name}.{key}: expected a list of strings")
            return tuple(value)

        known = {k: spec[k] for k in _KNOWN if k in spec}
        if "capabilities" in known:
            known["capabilities"] = strings("capabilities")
        extra = {
            k: v
            for k, v in spec.items()
            if k not in _KNOWN and k not in ("fallback", "aliases", "languages")
        }
        out[name] = ModelInfo(
            name=name,
            fallback=strings("fallback"),
            aliases=strings("aliases"),
            languages=strings("languages"),
            extra=extra,
            **known,
        )
    return out


class ModelCatalogWatch:
    """Blocking watch of one KV key in one datacenter, with its own index."""

    def __init__(self, settings: ConsulSettings, *, token: str | None) -> None:
        self.settings, self.token = settings, token
        self.key = f"{settings.kv_prefix or ''}{settings.kv_models_key}"
        self.models: Mapping[str, ModelInfo] = {}
        self.version = 0
        self.healthy = True
        self.detail = ""
        self._listeners: list[ModelsCallback] = []

    def subscribe(self, callback: ModelsCallback) -> Callable[[], None]:
        """Call ``callback(models)`` on every change (and now, if a catalogue is already known)."""
        self._listeners.append(callback)
        if self.version:
            callback(self.models)
        return lambda: self._listeners.remove(callback)

    async def check(self, client: Any, dc: str | None) -> None:
        """One non-blocking read at start: a 403 becomes a :class:`ConsulACLError`."""
        try:
            await client.kv.get(self.key, dc=dc, token=self.token)
        except Exception as exc:
            if classify(exc) is ErrorKind.ACL:
                raise ConsulACLError(
                    acl_message(exc, f"reading KV key {self.key!r} (needs key:read)")
                ) from None

    async def run(self, client: Any, dc: str | None) -> None:
        last_raw: bytes | None = b"\x00never"  # no value read yet

        def fetch(index: str | None) -> Any:
            return client.kv.get(
                self.key, index=index, wait=self.settings.wait, dc=dc, token=self.token
            )

        def on_error(exc: Exception, kind: ErrorKind) -> None:
            (log.warning if self.healthy else log.debug)(
                "Consul KV watch of %s failed (%s): %s", self.key, kind.value, exc
            )
            self.healthy, self.detail = False, f"KV {self.key}: {exc}"

        def on_data(entry: Any) -> None:
            nonlocal last_raw
            if not self.healthy:
                log.info("Consul KV watch of %s recovered", self.key)
            self.healthy, self.detail = True, ""
            raw = entry.get("Value") if entry else None
            if raw == last_raw:
                return  # a wake-up is not a change
            last_raw = raw
            self._apply(raw)

        await blocking_watch(self.settings, fetch, on_data, on_error)

    def _apply(self, raw: bytes | None) -> None:
        try:
            models = parse_models(raw)
        except ValueError as exc:
            log.error(
                "ignoring Consul KV %s: %s (keeping the previous model catalogue)", self.key, exc
            )
            return
        self.models, self.version = models, self.version + 1
        for callback in list(self._listeners):
            try:
                callback(models)
            except Exception:
                log.exception("model catalogue listener failed")
