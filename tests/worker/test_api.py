"""The OpenAI routes of the worker, through aiohttp's client and the official openai SDK."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from switchgear.worker.keys import METRICS, SLOT
from tests.helpers import poll_until
from tests.worker.conftest import admin_headers, worker_settings


def metric(client: Any, name: str, labels: dict[str, str] | None = None) -> float:
    value = client.app[METRICS].registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_chat_completion_uses_template_and_counts_usage(client: Any) -> None:
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "你好 hello"}],
            "max_tokens": 5,
            "temperature": 0,
        },
    )
    assert resp.status == 200
    body = await resp.json()
    tok = client.app[SLOT].engine.bundle.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "你好 hello"}], tokenize=False, add_generation_prompt=True
    )
    assert body["usage"]["prompt_tokens"] == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    if choice["finish_reason"] == "length":
        assert body["usage"]["completion_tokens"] == 5
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )


async def test_completion_length_and_true_token_counts(client: Any) -> None:
    resp = await client.post(
        "/v1/completions", json={"prompt": "The quick brown fox", "max_tokens": 7, "temperature": 0}
    )
    body = await resp.json()
    tok = client.app[SLOT].engine.bundle.tokenizer
    assert body["usage"]["prompt_tokens"] == len(tok("The quick brown fox")["input_ids"])
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 7


async def test_same_seed_same_output(client: Any) -> None:
    req = {"prompt": "Hello", "max_tokens": 12, "temperature": 1.0, "top_p": 0.9, "seed": 42}
    a = await (await client.post("/v1/completions", json=req)).json()
    b = await (await client.post("/v1/completions", json=req)).json()
    c = await (await client.post("/v1/completions", json={**req, "seed": 43})).json()
    assert a["choices"][0]["text"] == b["choices"][0]["text"]
    assert a["choices"][0]["text"] != c["choices"][0]["text"]


async def test_stop_sequence_cuts_text(client: Any) -> None:
    req = {"prompt": "Hello", "max_tokens": 20, "temperature": 0}
    full = (await (await client.post("/v1/completions", json=req)).json())["choices"][0]["text"]
    stop = full[3:5]
    assert stop.strip()
    body = await (await client.post("/v1/completions", json={**req, "stop": [stop]})).json()
    assert body["choices"][0]["text"] == full[: full.find(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_prompt_longer_than_context_is_400(client: Any) -> None:
    resp = await client.post("/v1/completions", json={"prompt": "hello " * 600, "max_tokens": 1})
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["code"] == "context_length_exceeded"
    assert "512" in err["message"]


async def test_chat_without_template_is_400(client: Any) -> None:
    client.app[SLOT].engine.bundle.tokenizer.chat_template = None
    resp = await client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert resp.status == 400
    assert "chat template" in (await resp.json())["error"]["message"]


async def test_unknown_model_is_404(client: Any) -> None:
    resp = await client.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "model_not_found"


async def test_models_metadata_and_health(client: Any) -> None:
    body = await (await client.get("/v1/models")).json()
    meta = body["data"][0]["metadata"]
    assert body["data"][0]["id"] == "tiny"
    assert meta == {
        **meta,
        "context_length": 512,
        "languages": ["en", "zh"],
        "quantization": None,
        "dtype": "fp32",
        "device": "cpu",
    }
    health = await client.get("/health")
    assert health.status == 200 and (await health.json())["status"] == "ready"


async def test_embeddings_are_mean_pooled(client: Any) -> None:
    resp = await client.post("/v1/embeddings", json={"input": ["hello world", "你好"]})
    body = await resp.json()
    assert len(body["data"]) == 2 and len(body["data"][0]["embedding"]) == 64
    assert body["data"][0]["embedding"] != body["data"][1]["embedding"]


async def test_streaming_through_the_openai_client(client: Any) -> None:
    oai = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0)
    async with oai:
        stream = await oai.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=6,
            stream=True,
            temperature=0,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
        plain = await oai.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=6,
            temperature=0,
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [plain.choices[0].finish_reason]
    assert chunks[-1].usage is not None and plain.usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


async def test_cancelled_stream_stops_generation(client: Any) -> None:
    engine = client.app[SLOT].engine
    resp = await client.post(
        "/v1/completions",
        json={"prompt": "Hello", "max_tokens": 480, "stream": True, "temperature": 0},
    )
    await resp.content.readline()
    resp.close()
    assert await asyncio.to_thread(engine.wait_idle, 30)
    assert metric(client, "switchgear_worker_cancelled_requests_total") == 1
    assert metric(client, "switchgear_worker_generated_tokens_total") < 480


async def test_concurrent_requests_share_a_batch(client: Any) -> None:
    engine = client.app[SLOT].engine
    engine.pause()
    tasks = [
        asyncio.create_task(
            client.post("/v1/completions", json={"prompt": f"hi {i}", "max_tokens": 4})
        )
        for i in range(4)
    ]
    assert await asyncio.to_thread(engine.wait_queued, 4)
    engine.resume()
    results = await asyncio.gather(*tasks)
    assert all(r.status == 200 for r in results)
    assert metric(client, "switchgear_worker_batch_size_max") == 4
    assert metric(client, "switchgear_worker_batch_size_count") == 1
    text = await (await client.get("/metrics")).text()
    for name in (
        "switchgear_worker_queue_depth",
        "switchgear_worker_tokens_per_second",
        "switchgear_worker_time_to_first_token_seconds_bucket",
        "switchgear_worker_rss_bytes",
        'switchgear_worker_model_info{device="cpu",dtype="fp32",model="tiny",quantization="none"}',
    ):
        assert name in text


async def test_faults_need_the_admin_key_and_fail_requests(client: Any) -> None:
    assert (await client.post("/admin/faults", json={"error_rate": 1.0})).status == 401
    resp = await client.post(
        "/admin/faults", json={"error_rate": 1.0, "delay_ms": 1}, headers=admin_headers()
    )
    assert (await resp.json())["error_rate"] == 1.0
    failed = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
    assert failed.status == 500 and (await failed.json())["error"]["type"] == "server_error"
    await client.post("/admin/faults", json={}, headers=admin_headers())
    shown = await (await client.get("/admin/faults", headers=admin_headers())).json()
    assert shown["error_rate"] == 0 and shown["delay_ms"] == 0


async def test_a_pause_fault_stalls_the_worker_periodically(client: Any) -> None:
    from switchgear.worker.faults import gc_pause

    started = time.perf_counter()
    gc_pause(60)
    assert time.perf_counter() - started >= 0.06
    body = {"pause_ms": 150, "pause_every_s": 0.5}
    shown = await (await client.post("/admin/faults", json=body, headers=admin_headers())).json()
    assert shown["pause_ms"] == 150 and shown["pause_every_s"] == 0.5

    async def paused() -> int:
        faults = await (await client.get("/admin/faults", headers=admin_headers())).json()
        return int(faults["pauses"] >= 2)

    await poll_until(paused, within=20, what="two pauses")
    await client.post("/admin/faults", json={}, headers=admin_headers())
    resp = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
    assert resp.status == 200


async def test_health_is_503_when_the_model_fails_to_load(
    plugin_manager: Any, tmp_path: Path
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from switchgear.worker.app import create_worker_app

    app = create_worker_app(worker_settings(tmp_path / "missing"), plugin_manager=plugin_manager)

    async with TestClient(TestServer(app)) as c:
        await app[SLOT].settled()
        resp = await c.get("/health")
        assert resp.status == 503 and (await resp.json())["status"] == "failed"
        assert (await c.post("/v1/completions", json={"prompt": "x"})).status == 503


@pytest.mark.parametrize("path", ["/admin/swap", "/admin/rollback"])
async def test_admin_routes_reject_wrong_key(client: Any, path: str) -> None:
    resp = await client.post(path, json={}, headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
