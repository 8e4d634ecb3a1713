"""Built-in adapters plugin: native protocols (TGI, Ollama) and prompt formats.

* ``register_adapters`` (trylast) — every protocol of :mod:`switchgear.default_plugins.protocols`
  (``tgi``, ``ollama``, ``completions`` and each prompt format), with
  :meth:`Adapters.adapter_for_backend` as their factory, since the TGI and ``completions``
  adapters depend on the backend's prompt format: its ``prompt_format`` meta, then
  ``models.<name>`` and ``router.catalogue`` in config, then the built-in catalogue. The
  gateway resolves it once per backend. ``openai`` is the OpenAI pass-through adapter's.
* ``rewrite_request`` / ``rewrite_response`` (trylast) — a backend that knows its model by
  another name (meta ``upstream_model``, e.g. Ollama's ``llama3:8b-instruct-q4_0``) is sent
  that name, and the client sees the gateway's name in responses and chunks. Both are
  marked :func:`~switchgear.plugins.calls.acts_on` such backends, so the gateway skips them
  (a stream's chunks included) for every other backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchgear import hookimpl
from switchgear.default_plugins.configured import Configured
from switchgear.default_plugins.protocols import adapter_for
from switchgear.default_plugins.protocols.prompt_formats import FORMATS
from switchgear.plugins.calls import acts_on
from switchgear.proxy.families import model_info
from switchgear.types import Adapter, Backend, RequestContext

PROTOCOLS = ("tgi", "ollama", "completions", *FORMATS)


def renamed(backend: Backend) -> bool:
    """Whether ``backend`` knows its model by another name (meta ``upstream_model``)."""
    return bool(backend.meta.get("upstream_model"))


class Adapters(Configured):
    def __init__(self, settings: Any = None) -> None:
        self._cache: dict[tuple[str, str | None], Adapter | None] = {}
        self.bind(settings)

    def configure(self, settings: Any) -> None:
        self.settings = settings
        self._cache.clear()

    def prompt_format(self, backend: Backend) -> str | None:
        if backend.meta.get("prompt_format") in FORMATS:
            return backend.meta["prompt_format"]
        models = getattr(self.settings, "models", {}) or {}
        extra = getattr(getattr(self.settings, "router", None), "catalogue", ()) or ()
        fmt = model_info(backend.model, config=models.get(backend.model), extra=extra).prompt_format
        return fmt if fmt in FORMATS else None

    @hookimpl(trylast=True)
    def register_adapters(
        self, register: Callable[[str, Callable[[Backend], Adapter | None]], None]
    ) -> None:
        for protocol in PROTOCOLS:
            register(protocol, self.adapter_for_backend)

    def adapter_for_backend(self, backend: Backend) -> Adapter | None:
        """The adapter for one backend of a protocol registered above, or None."""
        if backend.protocol == "openai":
            return None
        key = (backend.protocol, self.prompt_format(backend))
        if key not in self._cache:
            self._cache[key] = adapter_for(*key)
        return self._cache[key]

    @hookimpl(trylast=True)
    @acts_on(renamed)
    def rewrite_request(
        self, ctx: RequestContext, body: dict[str, Any], backend: Backend
    ) -> dict[str, Any] | None:
        upstream = backend.meta.get("upstream_model")
        if upstream and body.get("model") != upstream:
            return {**body, "model": upstream}
        return None

    @hookimpl(trylast=True)
    @acts_on(renamed)
    def rewrite_response(
        self, ctx: RequestContext, body: dict[str, Any], backend: Backend
    ) -> dict[str, Any] | None:
        if (
            backend.meta.get("upstream_model")
            and body.get("model") == backend.meta["upstream_model"]
        ):
            return {**body, "model": ctx.model}
        return None


def make_plugin(settings: Any) -> Adapters:
    return Adapters(settings)
