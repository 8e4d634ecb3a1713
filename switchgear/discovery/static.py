"""The static discovery source: backends listed under ``backends:`` in the config file.

It publishes its list once and then waits until cancelled; the list never changes while
the gateway runs.

A backend's identity is its (model, URL) pair: one URL often serves several models (a vLLM
with LoRA adapters, another gateway). ``id`` is optional; by default it is the URL when only
one entry uses that URL, and ``MODEL@URL`` for each entry of a shared URL. An entry that
repeats an earlier (model, URL) pair or explicit id is a config error (``config check`` and
``serve`` refuse it); here it is skipped with a warning, never silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from switchgear.discovery.base import Registry
from switchgear.types import Backend

log = logging.getLogger("switchgear.discovery.static")


def default_id(model: str, url: str, shared: bool) -> str:
    return f"{model}@{url}" if shared else url


def backends_from_settings(entries: Iterable[Any]) -> list[Backend]:
    """Backends from ``settings.backends`` entries (StaticBackend models or equivalent)."""
    entries = list(entries)
    models_per_url = Counter(url for url in {(e.model, e.url): e.url for e in entries}.values())
    out: list[Backend] = []
    seen_ids: set[str] = set()
    seen_pairs: set[tuple[str, str]] = set()
    for i, e in enumerate(entries):
        bid = e.id or default_id(e.model, e.url, models_per_url[e.url] > 1)
        # Identity: the explicit id, else (model, URL) — see settings.problems.backend_problems.
        if bid in seen_ids or (e.id is None and (e.model, e.url) in seen_pairs):
            log.warning(
                "backends[%d] (%s at %s) repeats an earlier backend; skipped", i, e.model, e.url
            )
            continue
        seen_ids.add(bid)
        if e.id is None:
            seen_pairs.add((e.model, e.url))
        out.append(
            Backend(
                id=bid,
                model=e.model,
                url=e.url,
                datacenter=e.datacenter,
                weight=e.weight,
                api_key=e.api_key,
                protocol=e.protocol,
                source="static",
                meta=dict(getattr(e, "meta", None) or {}),
            )
        )
    return out


class StaticSource:
    name = "static"

    def __init__(self, backends: Iterable[Backend]) -> None:
        self.backends = tuple(backends)

    async def run(self, registry: Registry) -> None:
        registry.replace(self.name, self.backends)
        await asyncio.Event().wait()
