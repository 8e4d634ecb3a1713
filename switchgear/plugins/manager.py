"""The plugin manager factory: where plugins come from, and how they are registered.

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

Hooks are called through pluggy (``pm.hook.<name>``), by way of the helpers of
:mod:`switchgear.plugins.calls` (re-exported here): :meth:`PluginManager.register` guards
every implementation as it arrives, so a failing plugin is reported and skipped instead of
failing the request, and an async one is bounded by the plugin timeout.
:class:`~switchgear.errors.APIError` passes through: a plugin raises it on purpose to
answer the client (e.g. the router's ``context_length_exceeded``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from switchgear.plugins import hookspecs
from switchgear.plugins.adapter_map import AdapterMap, adapter_for
from switchgear.plugins.calls import (
    DEFAULT_TIMEOUT_S,
    Pending,
    call_hook,
    call_hook_sync,
    chain_sync,
    first_result,
    first_result_sync,
    guard,
    settle,
    tracing_requested,
)

if TYPE_CHECKING:
    from switchgear.settings import Settings
    from switchgear.settings.plugins import PluginSettings

__all__ = [
    "DEFAULT_PLUGINS",
    "DEFAULT_TIMEOUT_S",
    "Pending",
    "PluginManager",
    "adapter_for",
    "call_hook",
    "call_hook_sync",
    "chain_sync",
    "describe_plugins",
    "first_result",
    "first_result_sync",
    "make_plugin_manager",
    "settle",
]

log = logging.getLogger("switchgear.plugins")

OLD_BUILTINS, NEW_BUILTINS = "switchgear.plugins.builtin.", "switchgear.default_plugins."
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


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that guards every implementation it registers.

    It also remembers where each plugin came from, its settings, the plugin timeout, and
    the protocol → adapter map (rebuilt on first use after a plugin comes or goes).
    """

    def __init__(
        self, settings: Settings | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.settings = settings
        self.timeout = timeout
        self.trace_calls = tracing_requested()
        # plugin name -> builtin | entrypoint | module | directory
        self.sources: dict[str, str] = {}
        self.failed: dict[str, str] = {}  # plugin name -> why it did not load
        self._adapters: AdapterMap | None = None

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        if registered is None:
            return None
        for caller in self.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    _check_pick_one(caller, impl)
                    guard(impl, caller.name, timeout=self.timeout, trace=self.trace_calls)
        self._adapters = None
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self._adapters = None
        return super().unregister(plugin, name)

    def adapter_map(self) -> AdapterMap:
        """The protocol → adapter map of the plugins registered now."""
        if self._adapters is None:
            self._adapters = AdapterMap(self)
        return self._adapters


def _check_pick_one(caller: pluggy.HookCaller, impl: pluggy.HookImpl) -> None:
    """Warn about an ``async def`` implementation of a firstresult hook: it is always picked."""
    spec = caller.spec
    if spec is None or not spec.opts.get("firstresult") or impl.wrapper or impl.hookwrapper:
        return
    if inspect.iscoroutinefunction(impl.function):
        log.warning(
            "plugin %s implements %s with async def: a firstresult hook picks synchronously, "
            "so its coroutine %s",
            impl.plugin_name,
            caller.name,
            "takes every call" if caller.name in hookspecs.AWAITABLE else "is skipped",
        )


def make_plugin_manager(
    *,
    settings: Settings | None = None,
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
    cfg: PluginSettings | None = getattr(settings, "plugins", None)
    if cfg is not None:
        modules = cfg.modules if modules is None else modules
        directory = cfg.directory if directory is None else directory
        disabled = cfg.disabled if disabled is None else disabled
    pm = PluginManager(settings, cfg.timeout if cfg is not None else DEFAULT_TIMEOUT_S)
    for name in disabled or ():
        pm.set_blocked(canonical_name(name))
    for mod_name in DEFAULT_PLUGINS if builtins is None else builtins:
        _register_module(pm, mod_name, "builtin")
    allow = _allowed()
    if load_entrypoints:
        _load_entry_points(pm, allow)
    for mod_name in modules or ():
        if allow is None or mod_name in allow:
            _register_module(pm, canonical_name(mod_name), "module")
    if directory is not None:
        _load_directory(pm, Path(directory), allow)
    return pm


def canonical_name(name: str) -> str:
    """A plugin name as registered: the old ``switchgear.plugins.builtin.X`` is ``default_plugins.X``."""
    if name.startswith(OLD_BUILTINS):
        return NEW_BUILTINS + name.removeprefix(OLD_BUILTINS)
    return name


def _wanted(pm: PluginManager, name: str, allow: set[str] | None) -> bool:
    return (allow is None or name in allow) and not pm.is_blocked(name)


def _load_entry_points(pm: PluginManager, allow: set[str] | None) -> None:
    for ep in _entry_points():
        if not _wanted(pm, ep.name, allow):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
            pm.sources[ep.name] = "entrypoint"
        except Exception as exc:
            _load_failed(pm, ep.name, f"entry point {ep.value}", exc)


def _load_directory(pm: PluginManager, directory: Path, allow: set[str] | None) -> None:
    ensure_importable_dir(directory)
    for path in sorted(directory.glob("*.py")):
        name = path.stem
        if not _wanted(pm, name, allow):
            continue
        try:
            pm.register(_exec_file(name, path), name=name)
            pm.sources[name] = "directory"
        except Exception as exc:
            _load_failed(pm, name, str(path), exc)


def _exec_file(name: str, path: Path) -> object:
    spec = importlib.util.spec_from_file_location(f"switchgear_plugin_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
