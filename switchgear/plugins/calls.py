"""Calling hooks through pluggy, safely: isolation, timeouts, tracing.

Every hook is called as ``pm.hook.<name>(...)``, so pluggy alone decides the order
(``tryfirst``/``trylast``, LIFO otherwise), stops ``firstresult`` hooks and runs wrappers.
The safety lives in each implementation instead: when a plugin is registered,
:func:`guard` replaces every ``HookImpl.function`` (wrappers excepted) by a function that

- logs an implementation that raises with its plugin's name and traceback and returns None,
  so pluggy skips it for that call (``firstresult`` hooks go on to the next one). An
  :class:`~switchgear.errors.APIError` passes through: a plugin raises it to answer the client;
- for a hook of :data:`~switchgear.plugins.hookspecs.AWAITABLE`, wraps an awaitable result
  in a :class:`Pending`, awaited later (:func:`settle`) under the plugin timeout; for any
  other hook an awaitable is closed, logged and skipped;
- for a hook of :data:`~switchgear.plugins.hookspecs.CHAINED` (``rewrite_request``,
  ``rewrite_response``), writes a non-None result back into the ``body`` dict that pluggy
  passes to the next implementation, so each sees the previous one's result;
- with ``SWITCHGEAR_TRACE_PLUGINS=1`` (read when the manager is made), logs each call with
  the plugin and its duration to the ``switchgear.plugins.trace`` logger.

The helpers below are the only way switchgear calls hooks; they add nothing to pluggy but
awaiting (:func:`call_hook`, :func:`first_result`), copying the chained value
(:func:`chain_sync`) and dropping awaitables a synchronous caller cannot use.

An implementation of a per-backend hook (``rewrite_request``, ``rewrite_response``) that
only acts on some backends may say so with :func:`acts_on`; :func:`acts_for` then tells
the gateway it can skip the hook (and the copy of the body it would pass) for the others,
which keeps a stream's chunks off the hook when no plugin would change them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import pluggy

from switchgear.errors import APIError
from switchgear.plugins import hookspecs
from switchgear.types import Backend

log = logging.getLogger("switchgear.plugins")
trace_log = logging.getLogger("switchgear.plugins.trace")

TRACE_ENV = "SWITCHGEAR_TRACE_PLUGINS"
DEFAULT_TIMEOUT_S = 5.0


def tracing_requested() -> bool:
    return os.environ.get(TRACE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class Pending:
    """An awaitable an implementation returned, with its plugin's name for the logs.

    ``await pending`` settles it with the timeout of its manager; the async helpers pass
    the timeout of the call instead.
    """

    __slots__ = ("awaitable", "hook", "plugin", "timeout", "trace")

    def __init__(
        self, plugin: str, hook: str, awaitable: Awaitable[Any], timeout: float, trace: bool
    ) -> None:
        self.plugin, self.hook, self.awaitable = plugin, hook, awaitable
        self.timeout, self.trace = timeout, trace

    def __await__(self) -> Generator[Any, None, Any]:
        return self.settle(self.timeout).__await__()

    async def settle(self, limit: float) -> Any:
        """The result, or None when the implementation failed or ran past ``limit`` seconds."""
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(self.awaitable, limit)
        except TimeoutError:
            log.error(
                "plugin %s timed out after %.1fs in %s; skipped", self.plugin, limit, self.hook
            )
        except (asyncio.CancelledError, APIError):
            raise
        except Exception:
            log.exception("plugin %s failed in %s; skipped", self.plugin, self.hook)
        finally:
            if self.trace:
                _trace(self.hook, self.plugin, started, "awaited")
        return None

    def discard(self) -> None:
        """Close a coroutine that will not be awaited (no 'never awaited' warning)."""
        _close(self.awaitable)


def _close(awaitable: object) -> None:
    if inspect.iscoroutine(awaitable):
        awaitable.close()


def _trace(hook: str, plugin: str, started: float, what: str = "called") -> None:
    ms = (time.perf_counter() - started) * 1000
    trace_log.info("hook %s: plugin %s %s in %.3f ms", hook, plugin, what, ms)


# --- implementations that act on some backends only ----------------------------------------

_ACTS_ON = "switchgear_acts_on"
_F = TypeVar("_F", bound=Callable[..., Any])


def acts_on(predicate: Callable[[Backend], bool]) -> Callable[[_F], _F]:
    """Mark a ``rewrite_request``/``rewrite_response`` implementation as acting only on the
    backends for which ``predicate(backend)`` is true: for any other backend it would return
    None, so the gateway may not call it. Put it under ``@hookimpl``."""

    def mark(fn: _F) -> _F:
        setattr(fn, _ACTS_ON, predicate)
        return fn

    return mark


def acts_for(pm: pluggy.PluginManager, hook_name: str, backend: Backend) -> bool:
    """Whether any implementation of ``hook_name`` may act on ``backend``.

    Wrappers and implementations without :func:`acts_on` may act on every backend; a
    predicate that raises counts as acting (the call itself then reports the plugin).
    """
    for impl in _hook(pm, hook_name).get_hookimpls():
        predicate = getattr(impl.function, _ACTS_ON, None)
        if predicate is None or impl.wrapper or impl.hookwrapper:
            return True
        try:
            if predicate(backend):
                return True
        except Exception:
            return True
    return False


# --- guarding implementations at registration ----------------------------------------------


def guard(impl: pluggy.HookImpl, hook: str, *, timeout: float, trace: bool) -> None:
    """Make one implementation safe to call through ``pm.hook`` (see the module docstring)."""
    if impl.wrapper or impl.hookwrapper:
        return  # generators driven by pluggy; a failing wrapper fails the call, as pluggy says
    predicate = getattr(impl.function, _ACTS_ON, None)
    call = _isolated(impl.function, impl.plugin_name, hook, timeout=timeout, trace=trace)
    value_arg = hookspecs.CHAINED.get(hook)
    if value_arg is not None:
        call = _chained(impl, call, value_arg, impl.plugin_name, hook)
    if predicate is not None:
        setattr(call, _ACTS_ON, predicate)
    impl.function = call  # type: ignore[misc]  # pluggy marks it Final; the call reads it


#: Result types that are never awaitable: checked first, it spares the hot path
#: ``inspect.isawaitable``'s ABC check.
_PLAIN = frozenset({dict, list, tuple, str, int, float, bool})


def _isolated(
    fn: Callable[..., Any], plugin: str, hook: str, *, timeout: float, trace: bool
) -> Callable[..., Any]:
    may_await = hook in hookspecs.AWAITABLE

    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter() if trace else 0.0
        try:
            res = fn(*args, **kwargs)
        except APIError:
            raise
        except Exception:
            log.exception("plugin %s failed in %s; skipped", plugin, hook)
            return None
        finally:
            if trace:
                _trace(hook, plugin, started)
        if res is None or type(res) in _PLAIN or not inspect.isawaitable(res):
            return res
        if may_await:
            return Pending(plugin, hook, res, timeout, trace)
        _close(res)
        log.error(
            "plugin %s returned an awaitable from %s, which is called synchronously; skipped",
            plugin,
            hook,
        )
        return None

    return call


def _chained(
    impl: pluggy.HookImpl, call: Callable[..., Any], value_arg: str, plugin: str, hook: str
) -> Callable[..., Any]:
    """Write each result back into the chained dict, which pluggy hands to the next one.

    An implementation that does not name the chained argument still needs it here, so it
    is appended to what pluggy passes and removed before the implementation sees it.
    """
    names = tuple(impl.argnames)
    extra = value_arg not in names and value_arg not in impl.kwargnames
    if extra:
        impl.argnames = (*names, value_arg)  # type: ignore[misc]
    index = len(names) if extra else (names.index(value_arg) if value_arg in names else None)

    def chained(*args: Any, **kwargs: Any) -> None:
        value = kwargs[value_arg] if index is None else args[index]
        res = call(*args[:-1], **kwargs) if extra else call(*args, **kwargs)
        if res is None or res is value:
            return None
        if not isinstance(res, dict) or not isinstance(value, dict):
            log.error("plugin %s returned %s from %s, not a dict; skipped", plugin, type(res), hook)
            return None
        value.clear()
        value.update(res)
        return None

    return chained


# --- calling -----------------------------------------------------------------------------


def _hook(pm: pluggy.PluginManager, hook_name: str) -> Any:
    return getattr(pm.hook, hook_name)


def _limit(pm: pluggy.PluginManager, timeout: float | None) -> float:
    return timeout if timeout is not None else getattr(pm, "timeout", DEFAULT_TIMEOUT_S)


def _usable_now(res: Any) -> bool:
    """False for a :class:`Pending` met by a synchronous caller: it is closed and logged."""
    if not isinstance(res, Pending):
        return True
    res.discard()
    log.error(
        "plugin %s returned an awaitable from %s, which is called synchronously; skipped",
        res.plugin,
        res.hook,
    )
    return False


async def settle(res: Any, limit: float) -> Any:
    """The one place hook results are awaited: a :class:`Pending` bounded by ``limit``."""
    if isinstance(res, Pending):
        return await res.settle(limit)
    if inspect.isawaitable(res):  # returned by a hook wrapper, which is not guarded
        return await asyncio.wait_for(res, limit)
    return res


def call_hook_sync(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """Every implementation's non-None result; failures and awaitables are logged and skipped."""
    return [res for res in _hook(pm, hook_name)(**kwargs) if _usable_now(res)]


def first_result_sync(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> Any:
    """The first non-None result of a firstresult hook; failing implementations are skipped."""
    res = _hook(pm, hook_name)(**kwargs)
    return res if _usable_now(res) else None


def chain_sync(pm: pluggy.PluginManager, hook_name: str, value_arg: str, **kwargs: Any) -> Any:
    """Thread a dict through every implementation of a chained hook; returns the last value.

    The hook gets a shallow copy of ``kwargs[value_arg]`` (the caller's dict is not
    changed); an implementation returning None keeps it, one that raises is skipped.
    """
    value = kwargs[value_arg] = dict(kwargs[value_arg])
    _hook(pm, hook_name)(**kwargs)
    return value


async def call_hook(
    pm: pluggy.PluginManager,
    hook_name: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - bounds each implementation, not the call
    **kwargs: Any,
) -> list[Any]:
    """Call every implementation, then await the async ones in order, each bounded by ``timeout``.

    Synchronous implementations therefore run before the body of any ``async def`` one.
    """
    limit = _limit(pm, timeout)
    results: list[Any] = list(_hook(pm, hook_name)(**kwargs))
    out: list[Any] = []
    for i, res in enumerate(results):
        try:
            value = await settle(res, limit)
        except BaseException:
            for rest in results[i + 1 :]:
                if isinstance(rest, Pending):
                    rest.discard()
            raise
        if value is not None:
            out.append(value)
    return out


async def first_result(
    pm: pluggy.PluginManager,
    hook_name: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - bounds the implementation, not the call
    **kwargs: Any,
) -> Any:
    """The picked implementation's result of a firstresult hook, awaited when it is awaitable."""
    return await settle(_hook(pm, hook_name)(**kwargs), _limit(pm, timeout))
