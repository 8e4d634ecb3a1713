"""The plugin manager: where plugins come from, and calling hooks safely."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from switchgear import hookimpl
from switchgear.errors import InvalidRequest
from switchgear.plugins import manager
from switchgear.plugins.manager import (
    adapter_for,
    call_hook,
    call_hook_sync,
    chain_sync,
    describe_plugins,
    first_result,
    first_result_sync,
    make_plugin_manager,
)
from switchgear.settings import parse_settings
from switchgear.types import AnomalyEvent, Backend, RequestContext, ScaleRequest
from tests.plugins.plugins_for_tests import marker
from tests.plugins.plugins_for_tests.recorder import Recorder

MARKER = "tests.plugins.plugins_for_tests.marker"
CTX = RequestContext("r", "chat.completions", {}, "m", "m")
BACKEND = Backend("b", "m", "http://x")


def bare() -> manager.PluginManager:
    return make_plugin_manager(load_entrypoints=False, builtins=())


class Plugin:
    def __init__(self, name: str, result: Any = None, exc: Exception | None = None) -> None:
        self.name, self.result, self.exc = name, result, exc

    @hookimpl
    def rewrite_request(self, ctx: Any, body: dict[str, Any], backend: Any) -> Any:
        if self.exc:
            raise self.exc
        return None if self.result is None else {**body, self.name: self.result}

    @hookimpl
    def adapter_for_backend(self, backend: Any) -> Any:
        if self.exc:
            raise self.exc
        return self.result


def test_builtins_load_and_disabled_names_block_them() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    names = {n for n, p in pm.list_name_plugin() if p is not None}
    assert {
        "switchgear.default_plugins.router",
        "switchgear.default_plugins.adapters",
        "switchgear.default_plugins.canary",
    } <= names
    pm = make_plugin_manager(
        load_entrypoints=False, disabled=["router", "switchgear.default_plugins.canary"]
    )
    names = {n for n, p in pm.list_name_plugin() if p is not None}
    assert (
        "switchgear.default_plugins.router" not in names
        and "switchgear.default_plugins.canary" not in names
    )
    rows = {r["name"]: r for r in describe_plugins(pm)}
    assert rows["router"] == {
        "name": "router",
        "version": None,
        "hooks": [],
        "builtin": True,
        "kind": "built-in",
        "enabled": False,
        "source": "builtin",
    }


def test_settings_configure_built_ins_and_modules() -> None:
    settings = parse_settings(
        {"router": {"aliases": ["smart"]}, "plugins": {"modules": [MARKER], "timeout": 1.5}}
    )
    pm = make_plugin_manager(settings=settings, load_entrypoints=False)
    assert pm.timeout == 1.5
    router: Any = pm.get_plugin("switchgear.default_plugins.router")
    assert router.settings.aliases == ["smart"]
    assert pm.get_plugin(MARKER) is marker
    row = next(r for r in describe_plugins(pm) if r["name"] == MARKER)
    assert (row["kind"], row["source"], row["hooks"]) == (
        "installed",
        "module",
        ["rewrite_request"],
    )


def test_entry_points_and_load_plugins_env(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        SimpleNamespace(
            name="good", value="x:y", load=lambda: marker, dist=SimpleNamespace(version="1.2")
        ),
        SimpleNamespace(name="other", value="x:z", load=lambda: Recorder(), dist=None),
        SimpleNamespace(name="broken", value="x:w", load=lambda: 1 / 0, dist=None),
    ]
    monkeypatch.setattr(manager, "_entry_points", lambda: eps)
    pm = make_plugin_manager(builtins=())
    assert pm.get_plugin("good") is marker and pm.get_plugin("other") is not None
    rows = {r["name"]: r for r in describe_plugins(pm)}
    assert rows["good"]["version"] == "1.2" and rows["good"]["source"] == "entrypoint"
    assert rows["broken"]["source"] == "failed" and "ZeroDivisionError" in rows["broken"]["error"]
    monkeypatch.setenv("SWITCHGEAR_LOAD_PLUGINS", "good")
    pm = make_plugin_manager(builtins=())
    assert pm.get_plugin("good") is marker and pm.get_plugin("other") is None
    monkeypatch.setenv("SWITCHGEAR_LOAD_PLUGINS", "")
    assert make_plugin_manager(builtins=(), modules=[MARKER]).get_plugin("good") is None
    monkeypatch.delenv("SWITCHGEAR_LOAD_PLUGINS")
    assert make_plugin_manager(builtins=(), disabled=["good"]).get_plugin("good") is None


def test_plugins_directory_and_a_broken_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "mine.py").write_text(Path(marker.__file__).read_text())
    (tmp_path / "bad.py").write_text("raise ImportError('nope')\n")
    with caplog.at_level(logging.ERROR, "switchgear.plugins"):
        pm = make_plugin_manager(load_entrypoints=False, builtins=(), directory=tmp_path)
    assert pm.get_plugin("mine") is not None and pm.get_plugin("bad") is None
    assert "plugin bad" in caplog.text and "failed to load" in caplog.text


def test_missing_config_module_is_reported_not_fatal() -> None:
    pm = make_plugin_manager(load_entrypoints=False, builtins=(), modules=["no_such_plugin_module"])
    assert "no_such_plugin_module" in pm.failed


def test_chain_skips_failures_and_keeps_none(caplog: pytest.LogCaptureFixture) -> None:
    pm = bare()
    pm.register(Plugin("a", 1), name="a")
    pm.register(Plugin("boom", exc=RuntimeError("bad plugin")), name="boom")
    pm.register(Plugin("none"), name="none")
    with caplog.at_level(logging.ERROR, "switchgear.plugins"):
        out = chain_sync(pm, "rewrite_request", "body", ctx=CTX, body={"x": 0}, backend=BACKEND)
    assert out == {"x": 0, "a": 1}
    assert "plugin boom failed in rewrite_request; skipped" in caplog.text
    assert "bad plugin" in caplog.text  # the traceback is logged


def test_first_result_skips_failures_and_api_errors_pass() -> None:
    pm = bare()
    pm.register(Plugin("fallback", "adapter-a"), name="fallback")
    pm.register(Plugin("boom", exc=RuntimeError("x")), name="boom")
    assert first_result_sync(pm, "adapter_for_backend", backend=BACKEND) == "adapter-a"
    pm.register(Plugin("refuse", exc=InvalidRequest("no")), name="refuse")
    with pytest.raises(InvalidRequest):
        first_result_sync(pm, "adapter_for_backend", backend=BACKEND)


def test_wrappers_and_coroutines_are_not_results(caplog: pytest.LogCaptureFixture) -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def adapter_for_backend(self, backend: Any) -> Any:
            return (yield)

    class AsyncImpl:
        @hookimpl
        async def adapter_for_backend(self, backend: Any) -> Any:
            return "async"

    pm = bare()
    pm.register(Plugin("sync", "sync"), name="sync")
    pm.register(Wrapper(), name="wrapper")
    pm.register(AsyncImpl(), name="async")
    with caplog.at_level(logging.ERROR, "switchgear.plugins"):
        assert first_result_sync(pm, "adapter_for_backend", backend=BACKEND) == "sync"
    assert "plugin async returned an awaitable" in caplog.text


async def test_async_implementations_are_awaited_and_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Hangs:
        @hookimpl
        async def shutdown(self, app: Any) -> None:
            await asyncio.Event().wait()

    class Fails:
        @hookimpl
        async def shutdown(self, app: Any) -> None:
            raise RuntimeError("async failure")

    pm = bare()
    rec = Recorder()
    for name, plugin in (("recorder", rec), ("hangs", Hangs()), ("fails", Fails())):
        pm.register(plugin, name=name)
    with caplog.at_level(logging.ERROR, "switchgear.plugins"):
        assert await call_hook(pm, "shutdown", timeout=0.05, app=None) == []
    assert rec.calls == ["shutdown"]
    assert "plugin hangs timed out after 0.1s in shutdown" in caplog.text
    assert "plugin fails failed in shutdown" in caplog.text


# --- the worker's and the detector's hooks, through the plugin manager ----------------------


def recorder_pm() -> manager.PluginManager:
    pm = bare()
    pm.register(Recorder(), name="recorder")
    return pm


def test_hook_load_model() -> None:
    pm = recorder_pm()
    assert first_result_sync(pm, "load_model", spec={"path": "/models/tiny"}) == {
        "loaded": "/models/tiny"
    }
    assert first_result_sync(pm, "load_model", spec="unknown") is None


def test_hook_quantize_model() -> None:
    pm = recorder_pm()
    out = first_result_sync(pm, "quantize_model", bundle={"m": 1}, method="test-int4", spec=None)
    assert out == {"m": 1, "quantization": "test-int4"}


def test_hook_verify_swap() -> None:
    gates = call_hook_sync(
        recorder_pm(), "verify_swap", current="old", candidate="bad", settings=None
    )
    assert gates == [{"gate": "recorder", "passed": False}]


def test_hook_register_detectors() -> None:
    found: dict[str, Any] = {}
    call_hook_sync(recorder_pm(), "register_detectors", register=found.__setitem__)
    assert found["recorder-threshold"](k=2) == ("threshold", {"k": 2})


async def test_hook_on_anomaly() -> None:
    event = AnomalyEvent("e1", "latency", 9.0, 0.0, backend_id="b1")
    actions = await call_hook(recorder_pm(), "on_anomaly", event=event, gateway=None)
    assert [(a.kind, a.target, a.event_id) for a in actions[0]] == [("eject", "b1", "e1")]


async def test_hook_scale() -> None:
    result = await first_result(recorder_pm(), "scale", request=ScaleRequest("m", 2, 1, "load"))
    assert (result.replicas, result.started) == (2, ("r2",))


# --- pluggy itself calls the hooks ------------------------------------------------------------


def ordered(name: str, calls: list[str], result: Any = None, **opts: bool) -> object:
    @hookimpl(**opts)
    def adapter_for_backend(backend: Any) -> Any:
        calls.append(name)
        return result

    return SimpleNamespace(adapter_for_backend=adapter_for_backend)


def test_tryfirst_trylast_and_firstresult_are_pluggys() -> None:
    calls: list[str] = []
    pm = bare()
    pm.register(ordered("last", calls, "from-last", trylast=True), name="last")
    pm.register(ordered("first", calls, tryfirst=True), name="first")
    pm.register(ordered("middle", calls, "from-middle"), name="middle")
    pm.register(ordered("newest", calls), name="newest")
    assert first_result_sync(pm, "adapter_for_backend", backend=BACKEND) == "from-middle"
    assert calls == ["first", "newest", "middle"]  # stopped at the first non-None result


def test_hook_wrappers_run_around_the_call(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def rewrite_request(self, ctx: Any, body: dict[str, Any], backend: Any) -> Any:
            seen.append(dict(body))
            result = yield
            seen.append(dict(body))
            return result

    pm = bare()
    pm.register(Plugin("a", 1), name="a")
    pm.register(Plugin("boom", exc=RuntimeError("bad")), name="boom")
    pm.register(Wrapper(), name="wrapper")
    with caplog.at_level(logging.ERROR, "switchgear.plugins"):
        out = chain_sync(pm, "rewrite_request", "body", ctx=CTX, body={"x": 0}, backend=BACKEND)
    assert out == {"x": 0, "a": 1}
    assert seen == [{"x": 0}, {"x": 0, "a": 1}]  # the wrapper sees the chain's final body
    assert "plugin boom failed in rewrite_request; skipped" in caplog.text


def test_chained_value_reaches_implementations_that_do_not_name_it() -> None:
    class Counter:
        @hookimpl(tryfirst=True)
        def rewrite_request(self, backend: Any) -> dict[str, Any]:
            return {"from": backend.id}

    class Reader:
        def __init__(self) -> None:
            self.seen: list[dict[str, Any]] = []

        @hookimpl(trylast=True)
        def rewrite_request(self, body: dict[str, Any]) -> None:
            self.seen.append(dict(body))

    pm, reader = bare(), Reader()
    pm.register(Counter(), name="counter")
    pm.register(reader, name="reader")
    original = {"x": 1}
    out = chain_sync(pm, "rewrite_request", "body", ctx=CTX, body=original, backend=BACKEND)
    assert out == {"from": "b"} and reader.seen == [{"from": "b"}]
    assert original == {"x": 1}  # the caller's dict is not changed


def test_async_def_on_a_pick_one_hook_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    class AsyncScale:
        @hookimpl
        async def scale(self, request: ScaleRequest) -> None:
            return None

    with caplog.at_level(logging.WARNING, "switchgear.plugins"):
        bare().register(AsyncScale(), name="async-scale")
    assert "plugin async-scale implements scale with async def" in caplog.text
    assert "takes every call" in caplog.text


def test_trace_logs_every_hook_call_with_plugin_and_duration(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SWITCHGEAR_TRACE_PLUGINS", "1")
    pm = bare()
    pm.register(Plugin("a", 1), name="a")
    pm.register(Recorder(), name="recorder")
    with caplog.at_level(logging.INFO, "switchgear.plugins.trace"):
        chain_sync(pm, "rewrite_request", "body", ctx=CTX, body={}, backend=BACKEND)
        asyncio.run(call_hook(pm, "shutdown", app=None))
    lines = [r.getMessage() for r in caplog.records if r.name == "switchgear.plugins.trace"]
    assert any(
        re.fullmatch(r"hook rewrite_request: plugin a called in \d+\.\d{3} ms", m) for m in lines
    )
    assert any(m.startswith("hook rewrite_request: plugin recorder called in") for m in lines)
    assert any(m.startswith("hook shutdown: plugin recorder awaited in") for m in lines)
    monkeypatch.delenv("SWITCHGEAR_TRACE_PLUGINS")
    caplog.clear()
    quiet = bare()
    quiet.register(Plugin("a", 1), name="a")
    with caplog.at_level(logging.INFO, "switchgear.plugins.trace"):
        chain_sync(quiet, "rewrite_request", "body", ctx=CTX, body={}, backend=BACKEND)
    assert not [r for r in caplog.records if r.name == "switchgear.plugins.trace"]


# --- the adapter map ------------------------------------------------------------------------


def test_adapter_map_collects_once_and_asks_adapter_for_backend_once_per_backend() -> None:
    pm = make_plugin_manager(
        load_entrypoints=False,
        builtins=(
            "switchgear.default_plugins.openai_adapter",
            "switchgear.default_plugins.adapters",
        ),
    )
    openai_backend = Backend("o", "m", "http://x")
    assert adapter_for(pm, openai_backend) is adapter_for(pm, openai_backend)
    assert adapter_for(pm, openai_backend).name == "openai"  # type: ignore[union-attr]
    assert adapter_for(pm, Backend("g", "m", "http://x", protocol="grpc")) is None
    first_map = pm.adapter_map()
    assert pm.adapter_map() is first_map  # collected once
    asked: list[str] = []

    class Legacy:
        @hookimpl
        def adapter_for_backend(self, backend: Backend) -> Any:
            asked.append(backend.id)
            return "legacy" if backend.protocol == "grpc" else None

    pm.register(Legacy(), name="legacy")
    assert pm.adapter_map() is not first_map  # a new plugin: collected again
    grpc = Backend("g", "m", "http://x", protocol="grpc")
    assert [adapter_for(pm, grpc), adapter_for(pm, grpc)] == ["legacy", "legacy"]
    assert adapter_for(pm, openai_backend).name == "openai"  # type: ignore[union-attr]
    assert asked == ["g", "o"]  # once per backend
    moved = Backend("g", "m", "http://x", protocol="grpc", meta={"zone": "b"})
    assert adapter_for(pm, moved) == "legacy" and asked == ["g", "o", "g"]


def test_startup_hands_the_host_to_built_ins() -> None:
    from switchgear.default_plugins.scaler import LocalScaler
    from switchgear.discovery.base import Registry
    from switchgear.plugins.host import Host

    settings = parse_settings({"router": {"aliases": ["smart"]}})
    pm = make_plugin_manager(
        load_entrypoints=False, builtins=("switchgear.default_plugins.router",)
    )
    scaler = LocalScaler({})
    pm.register(scaler, name="scaler")
    registry = Registry()
    asyncio.run(call_hook(pm, "startup", app=None, host=Host("gateway", settings, registry)))
    router: Any = pm.get_plugin("switchgear.default_plugins.router")
    assert router.settings.aliases == ["smart"] and scaler.registry is registry


def test_old_names_of_the_built_ins_keep_working() -> None:
    import switchgear.plugins.builtin.router as old_router

    import switchgear.default_plugins.router as router
    from switchgear.default_plugins.protocols import PromptFormatAdapter
    from switchgear.plugins.adapters import PromptFormatAdapter as OldAdapter
    from switchgear.plugins.builtin import canary

    assert old_router is router and router.__spec__ is not None
    assert router.__spec__.name == "switchgear.default_plugins.router"
    assert (
        canary.__name__ == "switchgear.default_plugins.canary" and OldAdapter is PromptFormatAdapter
    )
    pm = make_plugin_manager(
        load_entrypoints=False,
        disabled=["switchgear.plugins.builtin.router", "canary"],
        modules=["switchgear.plugins.builtin.balancing"],
        builtins=(
            "switchgear.default_plugins.router",
            "switchgear.default_plugins.canary",
            "switchgear.default_plugins.adapters",
        ),
    )
    names = {n for n, p in pm.list_name_plugin() if p is not None}
    assert names == {"switchgear.default_plugins.adapters", "switchgear.default_plugins.balancing"}
