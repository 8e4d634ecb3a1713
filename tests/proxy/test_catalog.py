"""The model catalogue as the gateway uses it: catalogue and backend metadata in /v1/models and
in fallback decisions, aliases a client may name, and the routing metrics."""

from __future__ import annotations

from switchgear.default_plugins import router
from switchgear.proxy import keys
from switchgear.proxy.metrics import Metrics
from tests.fakes import Fault
from tests.proxy.conftest import gateway_pm

MSG = [{"role": "user", "content": "hi"}]
CONTEXT_ERROR = {"message": "This model's maximum context length is 8192 tokens", "code": None}


async def test_models_list_carries_catalogue_and_backend_meta(upstream, gateway):
    qwen, custom = await upstream("qwen2-7b"), await upstream("house-model")
    gw = await gateway(
        {
            "backends": [
                {"model": "qwen2-7b", "url": qwen.url},
                {
                    "model": "house-model",
                    "url": custom.url,
                    "meta": {"context_length": "2048", "languages": "fr,de"},
                },
            ],
            "models": {"house-model": {"aliases": ["house"]}},
        }
    )
    async with gw.openai() as client:
        listed = {m.id: m.model_extra["switchgear"] for m in (await client.models.list()).data}
        house = await client.models.retrieve("house")
        answer = await client.chat.completions.create(model="house", messages=MSG)
    assert listed["qwen2-7b"]["context_length"] == 32768  # from the built-in catalogue
    assert (listed["house-model"]["context_length"], listed["house-model"]["languages"]) == (
        2048,
        ["fr", "de"],
    )  # from the static backend's meta
    assert listed["house"] == {"alias": True, "alias_of": "house-model"}
    assert house.id == "house" and answer.choices[0].message.content == "hello from house-model"
    assert "auto" not in listed  # no select_model plugin in this manager: "auto" cannot work
    backend = gw.app[keys.REGISTRY].backends("house-model")[0]
    assert backend.meta == {"context_length": "2048", "languages": "fr,de"}


async def test_routing_aliases_are_listed_and_routed(upstream, gateway, http):
    up = await upstream("m1")
    pm = gateway_pm(router.make_plugin(None))
    gw = await gateway({"backends": [{"model": "m1", "url": up.url}]}, pm=pm)
    async with gw.openai() as client:
        auto = await client.models.retrieve("auto")
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=MSG)
        named = await client.chat.completions.with_raw_response.create(model="m1", messages=MSG)
    assert auto.model_extra["switchgear"] == {"alias": True, "routing": True}
    assert raw.headers["x-switchgear-route"] == "m1; rule=cheapest"
    assert "x-switchgear-route" not in named.headers  # the router leaves named models alone
    async with http.get(gw.url + "/metrics") as r:
        text = await r.text()
    assert 'switchgear_route_decisions_total{alias="auto",model="m1",rule="cheapest"} 1.0' in text
    assert 'datacenter="local",model="m1",status="200"' in text


def test_route_rule_label_drops_numbers() -> None:
    m = Metrics()
    m.route_decision("auto", "big", "language:zh,context:12345")
    m.route_decision("auto", "big", "language:zh,context:777")
    text = m.render().decode()
    assert (
        'switchgear_route_decisions_total{alias="auto",model="big",rule="language:zh,context"} 2.0'
        in text
    )


async def test_catalogue_context_lengths_drive_the_context_fallback(upstream, gateway):
    small, big = await upstream("llama3-8b"), await upstream("qwen2-7b")
    small.always = Fault(status=400, error=CONTEXT_ERROR)
    gw = await gateway(
        {
            "backends": [
                {"model": "llama3-8b", "url": small.url},
                {"model": "qwen2-7b", "url": big.url},
            ],
            "models": {"llama3-8b": {"fallback": ["qwen2-7b"]}},
        }
    )
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="llama3-8b", messages=MSG
        )
    # 8192 (llama3) < 32768 (qwen2) from the catalogue: a larger model exists in the chain.
    assert raw.headers["x-switchgear-fallback"] == "llama3-8b -> qwen2-7b"
    assert raw.parse().choices[0].message.content == "hello from qwen2-7b"


async def test_admin_backends_need_consul(gateway, http):
    gw = await gateway({"auth": {"admin_key": "adm"}})
    async with http.post(
        gw.url + "/admin/backends",
        json={"url": "http://127.0.0.1:1/v1", "model": "m1"},
        headers={"Authorization": "Bearer adm"},
    ) as r:
        assert r.status == 400
        assert "consul" in (await r.json())["error"]["message"]
    async with http.post(gw.url + "/admin/backends", json={}) as r:
        assert r.status == 401
