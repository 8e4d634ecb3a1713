"""Every request-path, discovery, startup and routing hook exercised through a running gateway."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer

from switchgear.default_plugins.canary import Canary
from switchgear.settings import parse_settings
from switchgear.settings.router import CanaryRule
from switchgear.types import RequestContext
from tests.plugins import fakes
from tests.plugins.conftest import Gateway, manager_for, root
from tests.plugins.plugins_for_tests import raising
from tests.plugins.plugins_for_tests.recorder import Recorder

HERE = Path(__file__).parent


def chat(text: str, model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def routing_config(server: TestServer) -> dict[str, Any]:
    url = root(server)
    names = ["chatglm3-6b", "baichuan2-7b", "llama3-8b", "deepseek-coder-6.7b"]
    return {
        "backends": [{"model": n, "url": url, "protocol": "ollama", "id": n} for n in names],
        "models": {"llama3-8b": {"cost": 0.1}, "baichuan2-7b": {"cost": 0.5}},
    }


async def test_hook_select_model(gateway: Gateway, ollama_server: TestServer) -> None:
    """The prompt router chooses by language, task and length; the header names model and rule."""
    client = await gateway(routing_config(ollama_server))
    cases = [
        (chat("请用三句话介绍一下长城的历史。"), "baichuan2-7b; rule=language:zh"),
        (
            chat("Write a Python function that merges two sorted lists."),
            "deepseek-coder-6.7b; rule=task:code",
        ),
        (chat("Tell me a joke about cats."), "llama3-8b; rule=cheapest"),
        # too long for Baichuan2's 4,096 tokens: the next cheapest Chinese model that fits
        (chat("总结：" + "长城" * 2200), "chatglm3-6b; rule=language:zh,context:"),
    ]
    for body, header in cases:
        resp = await client.post("/v1/chat/completions", json=body)
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-switchgear-route"].startswith(header)
        assert (await resp.json())["model"] == header.split(";")[0]
    resp = await client.post("/v1/chat/completions", json=chat("x" * 100_000))
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "context_length_exceeded"


async def test_select_model_third_party_plugin_wins_over_the_router(
    gateway: Gateway, ollama_server: TestServer
) -> None:
    config = routing_config(ollama_server) | {"router": {"aliases": ["auto", "recorder-alias"]}}
    settings = parse_settings(config)
    pm = manager_for(settings)
    pm.register(recorder := Recorder(), name="recorder")
    client = await gateway(config, pm=pm)
    resp = await client.post("/v1/chat/completions", json=chat("hi", model="recorder-alias"))
    assert resp.status == 200
    assert (
        resp.headers["x-switchgear-route"] == "baichuan2-7b; rule=recorder:first"
    )  # sorted(models)[0]
    assert "select_model" in recorder.calls


async def test_hook_adapter_for_backend(
    gateway: Gateway,
    aiohttp_server: Any,
    tgi_server: TestServer,
    ollama_server: TestServer,
    completions_server: TestServer,
) -> None:
    """TGI, Ollama and prompt-format backends answer the official openai client, streaming too."""
    config = {
        "backends": [
            {"model": "llama3-8b", "url": root(tgi_server), "protocol": "tgi"},
            {"model": "ollama-llama", "url": root(ollama_server), "protocol": "ollama"},
            {
                "model": "glm",
                "url": root(completions_server) + "/v1",
                "protocol": "chatglm3",
                "id": "glm-1",
            },
            {
                "model": "upper",
                "url": root(completions_server) + "/v1",
                "protocol": "upper",
                "id": "upper-1",
            },
        ]
    }
    pm = manager_for(parse_settings(config))
    pm.register(Recorder(), name="recorder")
    client = await gateway(config, pm=pm)
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0)
    try:
        for model, answer in [
            ("llama3-8b", "TGI:Hello from the fake backend."),
            ("ollama-llama", "Ollama:Hello from the fake backend."),
            ("glm", "Completion:Hello from the fake backend."),
            ("upper", "\nCOMPLETION:HELLO FROM THE FAKE BACKEND."),
        ]:
            out = await sdk.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}]
            )
            assert out.choices[0].message.content == answer, model
            if model == "upper":
                continue
            stream = await sdk.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
            assert (
                "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
            ), model
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        assert tgi_server.app[fakes.REQUESTS][0]["inputs"].startswith(
            "<|begin_of_text|>"
        )  # llama3 from the catalogue
        assert completions_server.app[fakes.REQUESTS][0]["prompt"].startswith("[gMASK]sop<|user|>")
    finally:
        await sdk.close()


async def test_hook_rewrite_request(
    gateway: Gateway, completions_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The recorder's rewrite reaches the backend; a raising plugin is logged and skipped."""
    config = {
        "backends": [
            {"model": "glm", "url": root(completions_server) + "/v1", "protocol": "chatglm3"}
        ]
    }
    pm = manager_for(parse_settings(config))
    pm.register(recorder := Recorder(), name="recorder")
    pm.register(raising, name="raising")
    client = await gateway(config, pm=pm)
    with caplog.at_level(logging.ERROR, "switchgear.plugins"):
        resp = await client.post("/v1/chat/completions", json=chat("Hi", model="glm"))
    assert resp.status == 200, await resp.text()
    assert completions_server.app[fakes.REQUESTS][-1]["user"] == "rewritten-by-recorder"
    assert "rewrite_request" in recorder.calls
    assert "plugin raising failed in rewrite_request" in caplog.text
    assert "plugin raising failed in rewrite_response" in caplog.text
    assert "plugin raising failed in adapter_for_backend" in caplog.text


async def test_hook_rewrite_response(gateway: Gateway, ollama_server: TestServer) -> None:
    config = {"backends": [{"model": "m", "url": root(ollama_server), "protocol": "ollama"}]}
    pm = manager_for(parse_settings(config))
    pm.register(Recorder(), name="recorder")
    client = await gateway(config, pm=pm)
    resp = await client.post("/v1/chat/completions", json=chat("Hi", model="m"))
    assert (await resp.json())["system_fingerprint"] == "recorder"
    resp = await client.post("/v1/chat/completions", json=chat("Hi", model="m", stream=True))
    frames = [ln for ln in (await resp.text()).splitlines() if ln.startswith("data: {")]
    assert frames and all('"system_fingerprint":"recorder"' in f for f in frames)


async def test_hook_order_backends(gateway: Gateway, ollama_server: TestServer) -> None:
    url = root(ollama_server)
    config = {
        "backends": [
            {"model": "m", "url": url, "protocol": "ollama", "id": i} for i in ("a", "b", "c")
        ]
    }
    pm = manager_for(parse_settings(config))
    pm.register(recorder := Recorder(), name="recorder")
    client = await gateway(config, pm=pm)
    for _ in range(3):
        resp = await client.post("/v1/chat/completions", json=chat("Hi", model="m"))
        assert resp.headers["x-switchgear-backend"].startswith("c;")
    assert recorder.ordered[-1] == ["c", "b", "a"]


async def test_hook_register_routes(gateway: Gateway, ollama_server: TestServer) -> None:
    config = routing_config(ollama_server) | {
        "auth": {"admin_key": "adm"},
        "router": {"canary": [{"model": "llama3-8b", "candidate": "chatglm3-6b", "share": 0.5}]},
    }
    pm = manager_for(parse_settings(config))
    pm.register(Recorder(), name="recorder")
    client = await gateway(config, pm=pm)
    assert (await (await client.get("/recorder/ping")).json())["pong"] is True
    resp = await client.get("/admin/canary", headers={"Authorization": "Bearer adm"})
    assert resp.status == 200
    assert "canary:llama3-8b->chatglm3-6b" in (await resp.json())["rules"]


async def test_hook_register_discovery(gateway: Gateway, ollama_server: TestServer) -> None:
    pm = manager_for(parse_settings({}))
    pm.register(Recorder(discovered_url=root(ollama_server)), name="recorder")
    client = await gateway({}, pm=pm)
    resp = await client.post("/v1/chat/completions", json=chat("Hi", model="discovered-model"))
    assert resp.status == 200, await resp.text()
    assert resp.headers["x-switchgear-backend"].startswith("found-1")


async def test_hook_startup(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    """Async startup implementations are awaited; a hanging one is bounded by plugins.timeout."""
    config = {"plugins": {"timeout": 0.2}}
    pm = manager_for(parse_settings(config))
    pm.register(recorder := Recorder(), name="recorder")
    pm.register(raising, name="raising")
    with caplog.at_level(logging.ERROR, "switchgear.plugins"):
        client = await gateway(config, pm=pm)
    assert recorder.calls == ["startup"]
    assert "plugin raising timed out after 0.2s in startup" in caplog.text
    assert (await client.get("/recorder/ping")).status == 200


async def test_hook_shutdown(gateway: Gateway) -> None:
    pm = manager_for(parse_settings({}))
    pm.register(recorder := Recorder(), name="recorder")
    client = await gateway({}, pm=pm)
    await client.close()
    assert recorder.calls == ["startup", "shutdown"]


async def test_disabling_plugins_by_config(
    gateway: Gateway, ollama_server: TestServer, completions_server: TestServer
) -> None:
    """plugins.disabled blocks a built-in (the router) and a module plugin named in config."""
    config = routing_config(ollama_server) | {
        "auth": {"admin_key": "adm"},
        "plugins": {"modules": ["tests.plugins.plugins_for_tests.marker"], "disabled": ["router"]},
    }
    config["backends"].append(
        {
            "model": "glm",
            "url": root(completions_server) + "/v1",
            "protocol": "chatglm3",
            "id": "glm-1",
        }
    )
    client = await gateway(config)
    resp = await client.post("/v1/chat/completions", json=chat("你好"))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "model_not_found"
    await client.post("/v1/chat/completions", json=chat("Hi", model="glm"))
    assert completions_server.app[fakes.REQUESTS][-1]["user"] == "marker"
    rows = {
        r["name"]: r
        for r in (
            await (
                await client.get("/admin/plugins", headers={"Authorization": "Bearer adm"})
            ).json()
        )["data"]
    }
    assert rows["router"]["enabled"] is False and rows["router"]["builtin"] is True
    assert rows["tests.plugins.plugins_for_tests.marker"]["hooks"] == ["rewrite_request"]
    assert rows["switchgear.default_plugins.adapters"]["enabled"] is True

    config["plugins"]["disabled"] = ["tests.plugins.plugins_for_tests.marker"]
    client = await gateway(config)
    resp = await client.post("/v1/chat/completions", json=chat("Hi", model="glm"))
    assert resp.status == 200 and "user" not in completions_server.app[fakes.REQUESTS][-1]


async def test_plugins_directory(
    gateway: Gateway, completions_server: TestServer, tmp_path: Path
) -> None:
    (tmp_path / "dirplugin.py").write_text((HERE / "plugins_for_tests" / "marker.py").read_text())
    config = {
        "backends": [
            {"model": "glm", "url": root(completions_server) + "/v1", "protocol": "chatglm3"}
        ],
        "plugins": {"directory": str(tmp_path)},
    }
    client = await gateway(config)
    assert (await client.post("/v1/chat/completions", json=chat("Hi", model="glm"))).status == 200
    assert completions_server.app[fakes.REQUESTS][-1]["user"] == "marker"


def test_canary_split_is_stable_and_shares_traffic() -> None:
    """Unit level: the gateway does not yet call select_model for concrete models (see report)."""
    plugin = Canary([CanaryRule(model="a", candidate="b", share=0.3)])
    models: dict[str, Any] = {"a": None, "b": None}
    chosen = 0
    for i in range(1000):
        ctx = RequestContext(f"r{i}", "chat.completions", {"user": f"u{i}"}, "a", "a")
        decision = plugin.select_model(ctx, models)
        chosen += decision is not None and decision.model == "b"
        again = plugin.select_model(
            RequestContext("other", "chat.completions", {"user": f"u{i}"}, "a", "a"), models
        )
        assert (again is None) == (decision is None)
    assert 250 < chosen < 350
    assert plugin.snapshot()["canary:a->b"]["candidate_requests"] == 2 * chosen


async def test_config_reaches_built_ins_of_a_manager_built_without_settings(
    aiohttp_client: Any, ollama_server: TestServer
) -> None:
    """create_app's own manager: the router and canary read router settings at startup."""
    from switchgear.proxy.app import create_app

    config = routing_config(ollama_server) | {
        "router": {
            "aliases": ["smart"],
            "rules": [{"name": "everything", "match": {}, "model": "deepseek-coder-6.7b"}],
        },
    }
    client = await aiohttp_client(create_app(parse_settings(config)))
    resp = await client.post("/v1/chat/completions", json=chat("hello", model="smart"))
    assert resp.status == 200, await resp.text()
    assert resp.headers["x-switchgear-route"] == "deepseek-coder-6.7b; rule=rule:everything"
