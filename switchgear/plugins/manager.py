"""The plugin manager factory and the safe ways to call hooks.

Plugins load from, in order: the built-in modules in :data:`DEFAULT_PLUGINS`, the
``switchgear`` entry-point group, modules named in config (``plugins.modules``) and ``*.py``
files in a plugins directory. ``SWITCHGEAR_LOAD_PLUGINS`` (comma-separated names) restricts
which non-built-in plugins load; ``plugins.disabled`` in config blocks any plugin by name.

Hooks are called through :func:`call_hook` / :func:`first_result`, never through
``pm.hook.<name>(...)`` directly, so that one failing plugin is reported and skipped
instead of failing the request, and a hanging async plugin is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pluggy

from switchgear.plugins import hookspecs

log = logging.getLogger("switchgear.plugins")

DEFAULT_PLUGINS: tuple[str, ...] = (
    "switchgear.plugins.builtin.static_discovery",
    "switchgear.plugins.builtin.consul_discovery",
    "switchgear.plugins.builtin.balancing",
    "switchgear.plugins.builtin.router",
    "switchgear.plugins.builtin.canary",
    "switchgear.plugins.builtin.openai_adapter",
    "switchgear.plugins.builtin.adapters",
    "switchgear.plugins.builtin.quantization",
    "switchgear.plugins.builtin.detectors",
    "switchgear.plugins.builtin.policy",
    "switchgear.plugins.builtin.scaler",
)

DEFAULT_TIMEOUT_S = 5.0


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    modules: Iterable[str] = (),
    directory: str | os.PathLike[str] | None = None,
    disabled: Iterable[str] = (),
    builtins: Iterable[str] | None = None,
) -> pluggy.PluginManager:
    """A new plugin manager with built-ins, entry points, config modules and a directory."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = set(disabled)
    for name in blocked:
        pm.set_blocked(name)
    for mod_name in DEFAULT_PLUGINS if builtins is None else builtins:
        _register_module(pm, mod_name, mod_name)
    allowed = os.environ.get("SWITCHGEAR_LOAD_PLUGINS")
    allow = {n.strip() for n in allowed.split(",") if n.strip()} if allowed is not None else None
    if load_entrypoints:
        for ep in _entry_points():
            if (allow is not None and ep.name not in allow) or pm.is_blocked(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception:
                log.exception("plugin %s (entry point) failed to load; skipped", ep.name)
    for mod_name in modules:
        if allow is None or mod_name in allow:
            _register_module(pm, mod_name, mod_name)
    if directory is not None:
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
            except Exception:
                log.exception("plugin %s (from %s) failed to load; skipped", name, path)
    return pm


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=hookspecs.PROJECT))


def _register_module(pm: pluggy.PluginManager, mod_name: str, name: str) -> None:
    if pm.is_blocked(name) or pm.is_blocked(mod_name.rsplit(".", 1)[-1]):
        return
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name == mod_name and mod_name.startswith("switchgear."):
            return  # a built-in not shipped in this build
        log.exception("plugin %s failed to import; skipped", mod_name)
        return
    except Exception:
        log.exception("plugin %s failed to import; skipped", mod_name)
        return
    pm.register(module, name=name)


def _impls(pm: pluggy.PluginManager, hook_name: str) -> list[Any]:
    """Implementations in pluggy's call order (tryfirst first, trylast last, LIFO otherwise)."""
    return list(reversed(getattr(pm.hook, hook_name).get_hookimpls()))


def _call_impl(impl: Any, kwargs: dict[str, Any]) -> Any:
    return impl.function(*[kwargs[a] for a in impl.argnames])


def plugin_name(pm: pluggy.PluginManager, impl: Any) -> str:
    return pm.get_name(impl.plugin) or impl.plugin_name


def call_hook_sync(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation synchronously; failures are logged and skipped.

    Awaitables returned by async implementations are closed unawaited and reported: use
    :func:`call_hook` from async code for hooks that may be async.
    """
    results = []
    for impl in _impls(pm, hook_name):
        try:
            res = _call_impl(impl, kwargs)
        except Exception:
            log.exception("plugin %s failed in %s; skipped", plugin_name(pm, impl), hook_name)
            continue
        if inspect.isawaitable(res):
            if inspect.iscoroutine(res):
                res.close()
            log.error("plugin %s returned an awaitable from sync call of %s", plugin_name(pm, impl), hook_name)
            continue
        if res is not None:
            results.append(res)
    return results


def first_result_sync(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> Any:
    """The first non-None result of a firstresult hook; failing implementations are skipped."""
    for impl in _impls(pm, hook_name):
        try:
            res = _call_impl(impl, kwargs)
        except Exception:
            log.exception("plugin %s failed in %s; skipped", plugin_name(pm, impl), hook_name)
            continue
        if res is not None:
            return res
    return None


async def _resolve(pm: pluggy.PluginManager, impl: Any, hook_name: str, res: Any, timeout: float) -> Any:
    if not inspect.isawaitable(res):
        return res
    try:
        return await asyncio.wait_for(res, timeout)
    except TimeoutError:
        log.error("plugin %s timed out after %.1fs in %s; skipped", plugin_name(pm, impl), timeout, hook_name)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("plugin %s failed in %s; skipped", plugin_name(pm, impl), hook_name)
    return None


async def call_hook(
    pm: pluggy.PluginManager, hook_name: str, *, timeout: float = DEFAULT_TIMEOUT_S, **kwargs: Any
) -> list[Any]:
    """Call every implementation, awaiting async ones (each bounded by ``timeout``)."""
    results = []
    for impl in _impls(pm, hook_name):
        try:
            res = _call_impl(impl, kwargs)
        except Exception:
            log.exception("plugin %s failed in %s; skipped", plugin_name(pm, impl), hook_name)
            continue
        res = await _resolve(pm, impl, hook_name, res, timeout)
        if res is not None:
            results.append(res)
    return results


async def first_result(
    pm: pluggy.PluginManager, hook_name: str, *, timeout: float = DEFAULT_TIMEOUT_S, **kwargs: Any
) -> Any:
    """Async variant of :func:`first_result_sync` for hooks whose implementations may be async."""
    for impl in _impls(pm, hook_name):
        try:
            res = _call_impl(impl, kwargs)
        except Exception:
            log.exception("plugin %s failed in %s; skipped", plugin_name(pm, impl), hook_name)
            continue
        res = await _resolve(pm, impl, hook_name, res, timeout)
        if res is not None:
            return res
    return None


def chain_sync(pm: pluggy.PluginManager, hook_name: str, value_arg: str, **kwargs: Any) -> Any:
    """Thread a value through every implementation: each receives the previous result.

    Used for ``rewrite_request`` / ``rewrite_response``: an implementation returning None
    keeps the value; one that raises is skipped with the value unchanged.
    """
    value = kwargs[value_arg]
    for impl in _impls(pm, hook_name):
        kwargs[value_arg] = value
        try:
            res = _call_impl(impl, kwargs)
        except Exception:
            log.exception("plugin %s failed in %s; skipped", plugin_name(pm, impl), hook_name)
            continue
        if inspect.iscoroutine(res):
            res.close()
            log.error("plugin %s: %s must be synchronous; skipped", plugin_name(pm, impl), hook_name)
            continue
        if res is not None:
            value = res
    return value


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Name, version, hooks, built-in or installed, enabled — for `plugins list` and /admin/plugins."""
    from importlib.metadata import PackageNotFoundError, version

    dists = {ep.name: ep for ep in _entry_points()}
    rows: list[dict[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        builtin = name in DEFAULT_PLUGINS
        ver = None
        ep = dists.get(name)
        if ep is not None and getattr(ep, "dist", None) is not None:
            ver = ep.dist.version
        elif builtin:
            try:
                ver = version("switchgear")
            except PackageNotFoundError:
                ver = None
        rows.append(
            {
                "name": name,
                "version": ver,
                "hooks": hooks,
                "builtin": builtin,
                "enabled": plugin is not None,
                "source": "builtin" if builtin else ("entrypoint" if ep else "config"),
            }
        )
    for name in _blocked_names(pm):
        rows.append({"name": name, "version": None, "hooks": [], "builtin": name in DEFAULT_PLUGINS,
                     "enabled": False, "source": "disabled"})
    return rows


def _blocked_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name, plugin in pm._name2plugin.items() if plugin is None)  # noqa: SLF001


def ensure_importable_dir(path: str | os.PathLike[str]) -> None:
    """Make a plugins directory importable for plugins that import their siblings."""
    p = str(Path(path).resolve())
    if p not in sys.path:
        sys.path.append(p)
