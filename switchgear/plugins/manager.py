"""The plugin manager factory and the safe ways to call hooks.

Plugins load from, in order: the built-in modules in :data:`DEFAULT_PLUGINS`, the
``switchgear`` entry-point group, modules named in config (``plugins.modules``) and ``*.py``
files in a plugins directory (``plugins.directory``). ``SWITCHGEAR_LOAD_PLUGINS``
(comma-separated names; empty = none) restricts which non-built-in plugins load;
``plugins.disabled`` blocks any plugin by name (a built-in by its short name, e.g. ``router``,
or its module path).

A built-in module that needs configuration defines ``make_plugin(settings)``; the manager
registers the object it returns (``settings`` is the app's
:class:`~switchgear.settings.Settings`, or None for defaults). This binds configuration to
one manager, so two apps in one process never share plugin state.

Hooks are called through :func:`call_hook` / :func:`first_result` / :func:`chain_sync` (and
their ``_sync`` variants), never through ``pm.hook.<name>(...)`` directly, so that one
failing plugin is reported and skipped instead of failing the request, and a hanging async
plugin is bounded by a timeout. The one exception that passes through is
:class:`~switchgear.errors.APIError`: a plugin raises it on purpose to answer the client
(e.g. the router's ``context_length_exceeded`` when no model can hold the prompt).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pluggy

from switchgear.errors import APIError
from switchgear.plugins import hookspecs

log = logging.getLogger("switchgear.plugins")

DEFAULT_PLUGINS: tuple[str, ...] = (
    "switchgear.default_plugins.static_discovery",
    "switchgear.default_plugins.consul_discovery",
    "switchgear.default_plugins.balancing",
    "switchgear.default_plugins.router",
    "switchgear.default_plugins.canary",
    "switchgear.default_plugins.openai_adapter",
    "switchgear.default_plugins.adapters",
    "switchgear.default_plugins.quantization",
    "switchgear.default_plugins.detectors",
    "switchgear.default_plugins.policy",
    "switchgear.default_plugins.scaler",
)

DEFAULT_TIMEOUT_S = 5.0


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from, its settings and timeout."""

    def __init__(self, settings: Any = None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(hookspecs.PROJECT)
        self.settings = settings
        self.timeout = timeout
        self.sources: dict[
            str, str
        ] = {}  # plugin name -> builtin | entrypoint | module | directory
        self.failed: dict[str, str] = {}  # plugin name -> why it did not load


def make_plugin_manager(
    *,
    settings: Any = None,
    load_entrypoints: bool = True,
    modules: Iterable[str] | None = None,
    directory: str | os.PathLike[str] | None = None,
    disabled: Iterable[str] | None = None,
    builtins: Iterable[str] | None = None,
) -> PluginManager:
    """A new plugin manager with built-ins, entry points, config modules and a directory.

    With ``settings``, ``modules``, ``directory``, ``disabled`` and the timeout default to
    ``settings.plugins``; explicit arguments win.
    """
    cfg = getattr(settings, "plugins", None)
    if cfg is not None:
        modules = cfg.modules if modules is None else modules
        directory = cfg.directory if directory is None else directory
        disabled = cfg.disabled if disabled is None else disabled
    pm = PluginManager(settings, cfg.timeout if cfg is not None else DEFAULT_TIMEOUT_S)
    pm.add_hookspecs(hookspecs)
    for name in disabled or ():
        pm.set_blocked(name)
    for mod_name in DEFAULT_PLUGINS if builtins is None else builtins:
        _register_module(pm, mod_name, "builtin")
    allow = _allowed()
    if load_entrypoints:
        for ep in _entry_points():
            if (allow is not None and ep.name not in allow) or pm.is_blocked(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
                pm.sources[ep.name] = "entrypoint"
            except Exception as exc:
                _load_failed(pm, ep.name, f"entry point {ep.value}", exc)
    for mod_name in modules or ():
        if allow is None or mod_name in allow:
            _register_module(pm, mod_name, "module")
    if directory is not None:
        ensure_importable_dir(directory)
        for path in sorted(Path(directory).glob("*.py")):
            name = path.stem
            if (allow is not None and name not in allow) or pm.is_blocked(name):
                continue
            try:
                spec = importlib.util.spec_from_file_location(f"switchgear_plugin_{name}", path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                pm.register(module, name=name)
                pm.sources[name] = "directory"
            except Exception as exc:
                _load_failed(pm, name, str(path), exc)
    return pm


def _allowed() -> set[str] | None:
    raw = os.environ.get("SWITCHGEAR_LOAD_PLUGINS")
    return None if raw is None else {n.strip() for n in raw.split(",") if n.strip()}


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=hookspecs.PROJECT))


def _load_failed(pm: PluginManager, name: str, where: str, exc: BaseException) -> None:
    log.error("plugin %s (%s) failed to load; skipped", name, where, exc_info=exc)
    pm.failed[name] = f"{type(exc).__name__}: {exc}"


def _register_module(pm: PluginManager, mod_name: str, source: str) -> None:
    if pm.is_blocked(mod_name) or pm.is_blocked(mod_name.rsplit(".", 1)[-1]):
        return
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if source == "builtin" and exc.name == mod_name:
            return  # a built-in not shipped in this build
        _load_failed(pm, mod_name, "import", exc)
        return
    except Exception as exc:
        _load_failed(pm, mod_name, "import", exc)
        return
    plugin: object = module
    factory = getattr(module, "make_plugin", None)
    if callable(factory):
        try:
            plugin = factory(pm.settings)
        except Exception as exc:
            _load_failed(pm, mod_name, "make_plugin", exc)
            return
    pm.register(plugin, name=mod_name)
    pm.sources[mod_name] = source


def _impls(pm: pluggy.PluginManager, hook_name: str) -> list[Any]:
    """Implementations in pluggy's call order (tryfirst first, trylast last, LIFO otherwise).

    Wrappers are left out: these helpers call implementations one by one, so a wrapper
    would otherwise be mistaken for an implementation returning a generator.
    """
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    return [i for i in reversed(impls) if not (i.hookwrapper or i.wrapper)]


def _call_impl(impl: Any, kwargs: dict[str, Any]) -> Any:
    return impl.function(*[kwargs[a] for a in impl.argnames])


def plugin_name(pm: pluggy.PluginManager, impl: Any) -> str:
    return pm.get_name(impl.plugin) or impl.plugin_name


def _failed(pm: pluggy.PluginManager, impl: Any, hook_name: str) -> None:
    log.exception("plugin %s failed in %s; skipped", plugin_name(pm, impl), hook_name)


def _sync_only(pm: pluggy.PluginManager, impl: Any, hook_name: str, res: Any) -> bool:
    """True when ``res`` is usable from a synchronous call; an awaitable is closed and reported."""
    if not inspect.isawaitable(res):
        return True
    if inspect.iscoroutine(res):
        res.close()
    log.error(
        "plugin %s returned an awaitable from %s, which is called synchronously; skipped",
        plugin_name(pm, impl),
        hook_name,
    )
    return False


def _calls(
    pm: pluggy.PluginManager, hook_name: str, kwargs: dict[str, Any]
) -> Iterator[tuple[Any, Any]]:
    """``(implementation, result)`` in call order, calling each lazily with ``kwargs``.

    An implementation that raises is logged with its plugin's name and skipped; an
    :class:`~switchgear.errors.APIError` propagates (a plugin may answer the client on purpose).
    """
    for impl in _impls(pm, hook_name):
        try:
            res = _call_impl(impl, kwargs)
        except APIError:
            raise
        except Exception:
            _failed(pm, impl, hook_name)
            continue
        yield impl, res


def call_hook_sync(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """Every implementation's non-None result; failures and awaitables are logged and skipped."""
    return [
        res
        for impl, res in _calls(pm, hook_name, kwargs)
        if res is not None and _sync_only(pm, impl, hook_name, res)
    ]


def first_result_sync(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> Any:
    """The first non-None result of a firstresult hook; failing implementations are skipped."""
    for impl, res in _calls(pm, hook_name, kwargs):
        if res is not None and _sync_only(pm, impl, hook_name, res):
            return res
    return None


def chain_sync(pm: pluggy.PluginManager, hook_name: str, value_arg: str, **kwargs: Any) -> Any:
    """Thread a value through every implementation: each receives the previous result.

    Used for ``rewrite_request`` / ``rewrite_response``: an implementation returning None
    keeps the value; one that raises is skipped with the value unchanged.
    """
    value = kwargs[value_arg]
    for impl, res in _calls(pm, hook_name, kwargs):  # each call sees kwargs as updated here
        if res is not None and _sync_only(pm, impl, hook_name, res):
            value = kwargs[value_arg] = res
    return value


def _timeout(pm: pluggy.PluginManager, timeout: float | None) -> float:
    return timeout if timeout is not None else getattr(pm, "timeout", DEFAULT_TIMEOUT_S)


async def _resolve(
    pm: pluggy.PluginManager, impl: Any, hook_name: str, res: Any, limit: float
) -> Any:
    if not inspect.isawaitable(res):
        return res
    try:
        return await asyncio.wait_for(res, limit)
    except TimeoutError:
        log.error(
            "plugin %s timed out after %.1fs in %s; skipped",
            plugin_name(pm, impl),
            limit,
            hook_name,
        )
    except (asyncio.CancelledError, APIError):
        raise
    except Exception:
        _failed(pm, impl, hook_name)
    return None


async def call_hook(
    pm: pluggy.PluginManager,
    hook_name: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - bounds each implementation, not the call
    **kwargs: Any,
) -> list[Any]:
    """Call every implementation, awaiting async ones (each bounded by ``timeout``)."""
    limit = _timeout(pm, timeout)
    results = []
    for impl, res in _calls(pm, hook_name, kwargs):
        res = await _resolve(pm, impl, hook_name, res, limit)
        if res is not None:
            results.append(res)
    return results


async def first_result(
    pm: pluggy.PluginManager,
    hook_name: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - bounds each implementation, not the call
    **kwargs: Any,
) -> Any:
    """Async variant of :func:`first_result_sync` for hooks whose implementations may be async."""
    limit = _timeout(pm, timeout)
    for impl, res in _calls(pm, hook_name, kwargs):
        res = await _resolve(pm, impl, hook_name, res, limit)
        if res is not None:
            return res
    return None


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Name, version, hooks, built-in or installed, enabled — for `plugins list` and /admin/plugins."""
    from importlib.metadata import PackageNotFoundError, version

    sources: dict[str, str] = getattr(pm, "sources", {})
    dists = {ep.name: ep for ep in _entry_points()}
    rows: list[dict[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        source = sources.get(name) or ("builtin" if name in DEFAULT_PLUGINS else "module")
        ver = None
        ep = dists.get(name) if source == "entrypoint" else None
        if ep is not None and getattr(ep, "dist", None) is not None:
            ver = ep.dist.version
        elif source == "builtin":
            try:
                ver = version("switchgear")
            except PackageNotFoundError:
                ver = None
        rows.append(
            _row(name, ver, sorted(h.name for h in pm.get_hookcallers(plugin) or []), source, True)
        )
    for name in _blocked_names(pm):
        builtin = name in DEFAULT_PLUGINS or any(
            m.rsplit(".", 1)[-1] == name for m in DEFAULT_PLUGINS
        )
        rows.append(_row(name, None, [], "builtin" if builtin else "disabled", False))
    for name, why in getattr(pm, "failed", {}).items():
        rows.append(_row(name, None, [], "failed", False) | {"error": why})
    return rows


def _row(
    name: str, ver: str | None, hooks: list[str], source: str, enabled: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "version": ver,
        "hooks": hooks,
        "builtin": source == "builtin",
        "kind": "built-in" if source == "builtin" else "installed",
        "enabled": enabled,
        "source": source,
    }


def _blocked_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name, plugin in pm._name2plugin.items() if plugin is None)  # noqa: SLF001


def ensure_importable_dir(path: str | os.PathLike[str]) -> None:
    """Make a plugins directory importable for plugins that import their siblings."""
    p = str(Path(path).resolve())
    if p not in sys.path:
        sys.path.append(p)
