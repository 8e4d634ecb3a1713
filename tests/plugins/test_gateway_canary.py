"""Canary and shadow through a running gateway: the canary plugin's ``select_model`` fires for
requests that name a model, and the gateway runs its shadow plans in the background."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from switchgear.proxy import keys
from tests.fakes import FakeUpstream, Fault
from tests.plugins.conftest import Gateway

ADMIN = {"Authorization": "Bearer adm"}
MSG = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
async def ups() -> AsyncIterator[dict[str, FakeUpstream]]:
    made = {m: await FakeUpstream(m).start() for m in ("glm", "qwen")}
    yield made
    for up in made.values():
        await up.close()


def config(ups: dict[str, FakeUpstream], mode: str, share: float = 1.0) -> dict[str, Any]:
    return {
        "auth": {"admin_key": "adm"},
        "backends": [{"model": m, "url": up.url} for m, up in ups.items()],
        "router": {"canary": [{"model": "glm", "candidate": "qwen", "share": share, "mode": mode}]},
    }


def sdk(client: TestClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)


async def shadows_done(client: TestClient) -> None:
    await asyncio.gather(*client.app[keys.SHADOW_TASKS])  # type: ignore[index]


async def test_canary_share_routes_to_the_candidate(
    gateway: Gateway, ups: dict[str, FakeUpstream]
) -> None:
    client = await gateway(config(ups, "canary"))
    async with sdk(client) as oa:
        raw = await oa.chat.completions.with_raw_response.create(model="glm", messages=MSG)
        other = await oa.chat.completions.with_raw_response.create(model="qwen", messages=MSG)
    assert raw.headers["x-switchgear-route"] == "qwen; rule=canary:glm->qwen"
    assert raw.parse().choices[0].message.content == "hello from qwen"
    assert "x-switchgear-route" not in other.headers  # not a canaried model
    assert not ups["glm"].requests and len(ups["qwen"].requests) == 2
    stats = (await (await client.get("/admin/canary", headers=ADMIN)).json())["rules"]
    assert stats["canary:glm->qwen"]["candidate_requests"] == 1
    metrics = await (await client.get("/metrics")).text()
    assert (
        'switchgear_route_decisions_total{alias="glm",model="qwen",rule="canary:glm->qwen"} 1.0'
        in metrics
    )


async def test_canary_share_zero_keeps_the_model(
    gateway: Gateway, ups: dict[str, FakeUpstream]
) -> None:
    client = await gateway(config(ups, "canary", share=0.0))
    resp = await client.post("/v1/chat/completions", json={"model": "glm", "messages": MSG})
    assert resp.status == 200 and "x-switchgear-route" not in resp.headers
    assert (await resp.json())["choices"][0]["message"]["content"] == "hello from glm"


async def test_shadow_mirrors_to_the_candidate_without_changing_the_answer(
    gateway: Gateway, ups: dict[str, FakeUpstream]
) -> None:
    client = await gateway(config(ups, "shadow"))
    async with sdk(client) as oa:
        raw = await oa.chat.completions.with_raw_response.create(model="glm", messages=MSG)
        await shadows_done(client)
        stream = await oa.chat.completions.create(model="glm", messages=MSG, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await shadows_done(client)
    assert raw.parse().choices[0].message.content == "hello from glm"
    assert "x-switchgear-route" not in raw.headers
    assert text and len(ups["glm"].requests) == 2
    mirrored = [r.body for r in ups["qwen"].requests]
    assert [(b["model"], b["stream"]) for b in mirrored] == [("qwen", False), ("qwen", False)]
    assert all(b["messages"] == MSG for b in mirrored)
    stats = (await (await client.get("/admin/canary", headers=ADMIN)).json())["rules"]
    s = stats["shadow:glm->qwen"]
    assert (s["primary_requests"], s["candidate_requests"], s["candidate_errors"]) == (2, 2, 0)
    assert s["candidate_latency_p50_s"] is not None and s["primary_latency_p50_s"] is not None
    assert s["compared"] == 1 and s["exact_matches"] == 0  # the streamed primary: latency only
    assert 0.5 < s["mean_similarity"] < 1


async def test_shadow_failure_is_recorded_and_tasks_end_with_the_app(
    gateway: Gateway, ups: dict[str, FakeUpstream]
) -> None:
    client = await gateway(config(ups, "shadow"))
    ups["qwen"].always = Fault(status=400)  # not retried: one failed shadow attempt
    resp = await client.post("/v1/chat/completions", json={"model": "glm", "messages": MSG})
    assert resp.status == 200
    await shadows_done(client)
    stats = (await (await client.get("/admin/canary", headers=ADMIN)).json())["rules"]
    assert stats["shadow:glm->qwen"]["candidate_errors"] == 1

    ups["qwen"].always = Fault(silence=True)  # a shadow still running when the gateway stops
    resp = await client.post("/v1/chat/completions", json={"model": "glm", "messages": MSG})
    assert resp.status == 200
    await ups["qwen"].wait_requests(2)
    tasks = set(client.app[keys.SHADOW_TASKS])  # type: ignore[index]
    assert len(tasks) == 1
    await client.close()
    assert all(t.cancelled() for t in tasks)
