"""Per-model policy: deadlines, retries, balancing, context length, fallback chain.

``models.<name>`` settings override the gateway-wide ``timeouts`` / ``retries`` /
``balancing``; models that appear only through discovery get the gateway defaults.
Context lengths and fallback chains follow the model catalogue (:meth:`Policies.use`,
called by :class:`~switchgear.proxy.catalog.ModelCatalog` whenever it changes), so the
built-in catalogue, backend metadata and Consul KV reach fallback decisions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from switchgear.settings import Settings
from switchgear.settings.gateway import Retries, Timeouts
from switchgear.types import ModelInfo

_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long", re.I
)


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    timeouts: Timeouts
    retries: Retries
    balancing: str
    context_length: int | None
    fallback: tuple[str, ...]
    client_timeout: aiohttp.ClientTimeout
    #: The model's backends accept a chat request whose final assistant message they continue
    #: (``continue_final_message``): a stream cut on another backend may resume there.
    supports_continuation: bool = False


def _client_timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    # ttft is enforced by the gateway around the first byte; aiohttp enforces the rest.
    return aiohttp.ClientTimeout(
        total=t.total, sock_connect=t.connect, sock_read=t.idle, ceil_threshold=60
    )


class Policies:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._default = self._make(None)
        self._by_model = {name: self._make(name) for name in settings.models}
        #: Models the detector's policy sent to their fallback chain (``set_fallback``):
        #: their chain starts at the first fallback while they are here.
        self.in_fallback: set[str] = set()
        #: Told of every local change to ``in_fallback`` (model, "fallback" | "restore",
        #: reason), so the fleet state can share it with the other gateways.
        self.on_change: Callable[[str, str, str], None] | None = None

    def set_fallback(self, model: str, active: bool, reason: str = "") -> None:
        """Send ``model``'s traffic along its fallback chain (active) or back to it."""
        if active == (model in self.in_fallback):
            return
        self.apply(model, "fallback" if active else "restore")
        if self.on_change is not None:
            self.on_change(model, "fallback" if active else "restore", reason)

    def apply(self, model: str, kind: str, reason: str = "", age_s: float = 0.0) -> None:
        """Apply another gateway's fallback switch; not reported to ``on_change``."""
        if kind == "fallback":
            self.in_fallback.add(model)
        elif kind == "restore":
            self.in_fallback.discard(model)

    def fallback_models(self) -> set[str]:
        return set(self.in_fallback)

    def use(self, infos: Mapping[str, ModelInfo]) -> None:
        """Take context lengths and fallback chains from ``infos`` (the model catalogue)."""
        names = dict.fromkeys([*self.settings.models, *infos])
        self._by_model = {name: self._make(name, infos.get(name)) for name in names}

    def _make(self, name: str | None, info: ModelInfo | None = None) -> ModelPolicy:
        s = self.settings
        m = s.models.get(name) if name is not None else None
        timeouts = (m.timeouts if m and m.timeouts else None) or s.timeouts
        if info is not None:
            context, fallback = info.context_length, tuple(info.fallback)
            continues = info.supports_continuation
        else:
            context, fallback = (m.context_length, tuple(m.fallback)) if m else (None, ())
            continues = m.supports_continuation if m else False
        return ModelPolicy(
            timeouts=timeouts,
            retries=(m.retries if m and m.retries else None) or s.retries,
            balancing=(m.balancing if m and m.balancing else None) or s.balancing,
            context_length=context,
            fallback=fallback,
            client_timeout=_client_timeout(timeouts),
            supports_continuation=continues,
        )

    def get(self, model: str) -> ModelPolicy:
        return self._by_model.get(model, self._default)

    def chain(self, model: str) -> list[str]:
        """``model`` then its fallback list, each model once (fallbacks of fallbacks follow)."""
        out = [model]
        i = 0
        while i < len(out):
            for nxt in self.get(out[i]).fallback:
                if nxt not in out:
                    out.append(nxt)
            i += 1
        if model in self.in_fallback and len(out) > 1:
            return out[1:]
        return out


def is_context_error(payload: Any) -> bool:
    """Does an upstream 400 body say the prompt exceeds the model's context?"""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return False
    err = payload["error"]
    if err.get("code") == "context_length_exceeded":
        return True
    return bool(_CONTEXT_RE.search(str(err.get("message") or "")))
