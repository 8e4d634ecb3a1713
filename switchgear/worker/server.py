"""``switchgear worker``: settings from a file and/or flags, then one aiohttp server."""

from __future__ import annotations

import logging
import os
from typing import Any

from aiohttp import web

from switchgear.errors import ConfigError
from switchgear.settings import Settings, load_settings

log = logging.getLogger("switchgear.worker")


def worker_settings(
    config: str | None,
    *,
    model_path: str | None = None,
    name: str | None = None,
    host: str | None = None,
    port: int | None = None,
    quantization: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
) -> Settings:
    """The file's settings with flags on top; ``--model`` alone is enough to serve."""
    overrides: dict[str, Any] = {
        "worker.model.model_name_or_path": model_path,
        "worker.model.name": name,
        "worker.model.quantization": quantization,
        "worker.model.dtype": dtype,
        "worker.model.device": device,
        "listen.host": host,
        "listen.port": port,
    }
    settings = load_settings(config, **overrides)
    if settings.worker is None:
        raise ConfigError("worker", "missing: give a worker section in the config or --model PATH")
    return settings


def configure_torch(settings: Settings) -> None:
    import torch

    threads = settings.worker.torch_threads if settings.worker else None
    torch.set_num_threads(threads or max(1, min(8, (os.cpu_count() or 2))))


def serve_from_cli(
    config: str | None = None,
    model_path: str | None = None,
    name: str | None = None,
    host: str | None = None,
    port: int | None = None,
    quantization: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
) -> int:
    from switchgear.worker.app import create_worker_app

    settings = worker_settings(
        config,
        model_path=model_path,
        name=name,
        host=host,
        port=port,
        quantization=quantization,
        dtype=dtype,
        device=device,
    )
    configure_torch(settings)
    app = create_worker_app(settings, config_path=config)
    log.info("worker listening on http://%s:%d", settings.listen.host, settings.listen.port)
    web.run_app(
        app,
        host=settings.listen.host,
        port=settings.listen.port,
        access_log=None,
        handler_cancellation=True,
        print=None,
        shutdown_timeout=settings.shutdown_grace,
    )
    return 0
