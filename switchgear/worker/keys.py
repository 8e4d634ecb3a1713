"""Every piece of worker app state, as typed ``web.AppKey``s (no string keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pluggy
from aiohttp import web

from switchgear.settings import Settings
from switchgear.worker.faults import Faults
from switchgear.worker.metrics import WorkerMetrics
from switchgear.worker.swap import ModelSlot

SwapListener = Callable[[web.Application, dict[str, Any]], Awaitable[None] | None]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
CONFIG_PATH: web.AppKey[str | None] = web.AppKey("config_path")
PLUGINS: web.AppKey[pluggy.PluginManager] = web.AppKey("plugins", pluggy.PluginManager)
SLOT: web.AppKey[ModelSlot] = web.AppKey("slot", ModelSlot)
#: The initial model load (a task); registration refreshes its Meta when it finishes.
LOAD_TASK: web.AppKey[asyncio.Task[None]] = web.AppKey("load_task")
METRICS: web.AppKey[WorkerMetrics] = web.AppKey("metrics", WorkerMetrics)
FAULTS: web.AppKey[Faults] = web.AppKey("faults", Faults)
SWAP_LISTENERS: web.AppKey[list[SwapListener]] = web.AppKey("swap_listeners")
#: Keys as bytes for :func:`switchgear.auth.match_key`; empty = none configured.
ADMIN_KEY: web.AppKey[tuple[bytes, ...]] = web.AppKey("admin_key", tuple)
API_KEYS: web.AppKey[tuple[bytes, ...]] = web.AppKey("api_keys", tuple)
