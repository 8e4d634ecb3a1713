"""``switchgear config check FILE``: validate and summarise a config file."""

from __future__ import annotations

from switchgear.settings import load_settings


def check_file(path: str) -> int:
    settings = load_settings(path)
    models = sorted({b.model for b in settings.backends} | set(settings.models))
    print(f"{path}: OK")
    print(f"  listen: {settings.listen.host}:{settings.listen.port} (workers: {settings.workers})")
    print(f"  static backends: {len(settings.backends)}; models: {', '.join(models) or '-'}")
    if settings.consul is not None:
        print(
            f"  consul: {settings.consul.host}:{settings.consul.port} service={settings.consul.service}"
        )
    if settings.worker is not None:
        print(f"  worker model: {settings.worker.model.model_name_or_path}")
    return 0
