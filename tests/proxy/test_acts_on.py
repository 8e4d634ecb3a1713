"""Per-backend rewrite hooks are skipped for the backends their implementations do not act on."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from switchgear import hookimpl
from switchgear.default_plugins.adapters import Adapters
from switchgear.plugins.calls import acts_for, acts_on
from switchgear.types import Backend
from tests.proxy.conftest import backends, gateway_pm

MSG = [{"role": "user", "content": "hi"}]
PLAIN = Backend(id="a", model="m1", url="http://127.0.0.1:1/v1")
RENAMED = Backend(
    id="b", model="m1", url="http://127.0.0.1:2/v1", meta={"upstream_model": "llama3:8b"}
)


class OnlyM2:
    """Tags every chunk and answer of model m2's backends; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    @acts_on(lambda backend: backend.model == "m2")
    def rewrite_response(self, ctx: Any, body: dict[str, Any], backend: Backend) -> Any:
        self.calls.append(backend.model)
        for choice in body.get("choices") or ():
            part = choice.get("delta") or choice.get("message") or {}
            if part.get("content"):
                part["content"] = "[m2]" + part["content"]
        return body


def test_the_builtin_rename_acts_only_on_backends_with_an_upstream_model() -> None:
    pm = gateway_pm(Adapters())
    for hook in ("rewrite_request", "rewrite_response"):
        assert not acts_for(pm, hook, PLAIN)
        assert acts_for(pm, hook, RENAMED)


def test_unmarked_wrapping_and_failing_implementations_act_on_every_backend() -> None:
    class Unmarked:
        @hookimpl
        def rewrite_response(self, ctx: Any, body: dict[str, Any], backend: Backend) -> None:
            return None

    class Wrapping:
        @hookimpl(wrapper=True)
        @acts_on(lambda backend: False)
        def rewrite_response(self, ctx: Any, body: Any, backend: Any) -> Generator[None]:
            return (yield)

    def broken(backend: Backend) -> bool:
        raise RuntimeError("broken predicate")

    class Failing:
        @hookimpl
        @acts_on(broken)
        def rewrite_response(self, ctx: Any, body: dict[str, Any], backend: Backend) -> None:
            return None

    for plugin in (Unmarked(), Wrapping(), Failing()):
        assert acts_for(gateway_pm(plugin), "rewrite_response", PLAIN), plugin
    assert not acts_for(gateway_pm(OnlyM2()), "rewrite_response", PLAIN)


async def test_streams_and_answers_are_rewritten_only_where_a_plugin_acts(upstream, gateway):
    plugin = OnlyM2()
    m1, m2 = await upstream("m1", chunks=3), await upstream("m2", chunks=3)
    gw = await gateway({"backends": backends(m1, m2)}, plugins=(plugin,))
    async with gw.openai() as client:
        texts: dict[str, str] = {}
        for model in ("m1", "m2"):
            stream = await client.chat.completions.create(model=model, messages=MSG, stream=True)
            texts[model] = "".join([c.choices[0].delta.content or "" async for c in stream])
        answer = await client.chat.completions.create(model="m2", messages=MSG)
        plain = await client.chat.completions.create(model="m1", messages=MSG)
    assert "[m2]" not in texts["m1"] and "[m2]" not in (plain.choices[0].message.content or "")
    assert texts["m2"].startswith("[m2]") and texts["m2"].replace("[m2]", "")
    assert (answer.choices[0].message.content or "").startswith("[m2]")
    assert plugin.calls and set(plugin.calls) == {"m2"}
