"""``switchgear config check FILE``: validate a config file and report every problem at once.

Three layers, all reported together: the schema (every pydantic error, not just the first),
references between sections (:mod:`switchgear.settings.problems`), and names that only the
loaded plugins know (protocols, detectors, quantization methods). ``switchgear serve`` runs
the same checks through :func:`config_problems` and refuses to start on any error.

The plugin layer imports the plugin manager lazily: this module is the command on top of
everything, and the settings package itself must stay importable without the plugins.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import ValidationError

from switchgear.errors import ConfigError
from switchgear.settings import Settings, load_settings
from switchgear.settings.base import read_yaml, substitute_env, validation_problems
from switchgear.settings.problems import Problem, settings_problems

BUILTIN_PLUGIN_PREFIX = "switchgear.default_plugins."


def plugin_problems(settings: Settings, pm: Any = None) -> list[Problem]:
    """Unknown protocols, detectors and quantization methods, as the plugins see them."""
    from switchgear.default_plugins.quantization import METHODS
    from switchgear.detector.registry import detector_factories
    from switchgear.plugins.manager import adapter_for, make_plugin_manager
    from switchgear.types import Backend

    if pm is None:
        pm = make_plugin_manager(settings=settings)
    out: list[Problem] = []
    for i, e in enumerate(settings.backends):
        backend = Backend(
            id=e.id or e.url, model=e.model, url=e.url, protocol=e.protocol, meta=dict(e.meta)
        )
        if adapter_for(pm, backend) is None:
            out.append(
                Problem(
                    f"backends[{i}].protocol",
                    f"unknown protocol {backend.protocol!r}: no adapter plugin speaks it",
                )
            )
    known = detector_factories(pm)
    for metric, name in settings.detector.detectors.items():
        if name not in known:
            out.append(
                Problem(
                    f"detector.detectors.{metric}",
                    f"unknown detector {name!r}; known: {', '.join(sorted(known))}",
                )
            )
    method = settings.worker.model.quantization if settings.worker is not None else None
    if method and method not in METHODS:
        others = [
            pm.get_name(impl.plugin) or "?"
            for impl in pm.hook.quantize_model.get_hookimpls()
            if not (getattr(impl.plugin, "__name__", "") or "").startswith(BUILTIN_PLUGIN_PREFIX)
        ]
        reason = f"unknown quantization method {method!r}; built-in: {', '.join(METHODS)}"
        if others:
            out.append(
                Problem(
                    "worker.model.quantization",
                    reason + f" (plugin {', '.join(others)} may offer it)",
                    "warning",
                )
            )
        else:
            out.append(Problem("worker.model.quantization", reason))
    return out


def config_problems(settings: Settings, pm: Any = None) -> list[Problem]:
    """Every problem of validated settings: references, duplicates and plugin names."""
    return settings_problems(settings) + plugin_problems(settings, pm)


def _load_all(path: str) -> tuple[Settings | None, list[Problem]]:
    """The settings, or None and every schema problem of the file."""
    try:
        data = substitute_env(read_yaml(path))
        return Settings.model_validate(data), []
    except ValidationError as exc:
        return None, [Problem(e.path, e.reason) for e in validation_problems(exc)]


def check_file(path: str) -> int:
    settings, problems = _load_all(path)
    if settings is not None:
        problems = config_problems(settings)
    errors = [p for p in problems if p.severity == "error"]
    for p in problems:
        print(f"{p.severity}: {p}", file=sys.stderr)
    if errors:
        print(f"{path}: {len(errors)} error(s)", file=sys.stderr)
        return 2
    assert settings is not None
    settings = load_settings(path)  # the same path serve takes (overrides, env)
    models = sorted({b.model for b in settings.backends} | set(settings.models))
    pairs = {(b.model, b.url) for b in settings.backends}
    print(f"{path}: OK")
    print(f"  listen: {settings.listen.host}:{settings.listen.port} (workers: {settings.workers})")
    print(f"  static backends: {len(pairs)}; models: {', '.join(models) or '-'}")
    if settings.consul is not None:
        print(
            f"  consul: {settings.consul.host}:{settings.consul.port} service={settings.consul.service}"
        )
    if settings.worker is not None:
        print(f"  worker model: {settings.worker.model.model_name_or_path}")
    return _check_scaling(settings)


def refuse_on_problems(settings: Settings) -> None:
    """For ``serve``: raise one ConfigError listing every error; warnings are only printed."""
    problems = config_problems(settings)
    for p in problems:
        if p.severity == "warning":
            print(f"config warning: {p}", file=sys.stderr)
    errors = [p for p in problems if p.severity == "error"]
    if len(errors) == 1:
        raise ConfigError(errors[0].path, errors[0].reason)
    if errors:
        raise ConfigError("", f"{len(errors)} problems:\n  " + "\n  ".join(map(str, errors)))


def _check_scaling(settings: Settings) -> int:
    """Orchestrator scaling: credentials, reachability and targets (contacts the APIs)."""
    if settings.scaling.kubernetes is None and settings.scaling.nomad is None:
        return 0
    import asyncio

    from switchgear.orchestrators.check import problems

    found = asyncio.run(problems(settings))
    for problem in found:
        print(f"  error: {problem}")
    return 1 if found else 0


def serve_cli(config: str | None, host: str | None, port: int | None, workers: int | None) -> int:
    """``switchgear serve``: the checks of ``config check`` (every error at once), then serve."""
    from switchgear.proxy.server import serve_settings

    settings = load_settings(
        config, **{"listen.host": host, "listen.port": port, "workers": workers}
    )
    refuse_on_problems(settings)
    return serve_settings(settings)
