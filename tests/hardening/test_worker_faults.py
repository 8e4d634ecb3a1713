"""Real tiny-model workers: continuation, a worker killed mid-stream, swap paths outside roots."""

from __future__ import annotations

import logging
import signal
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from switchgear.proxy.keys import BACKEND_STATE
from switchgear.settings import parse_settings
from switchgear.worker.tiny import TinySpec, make_tiny
from switchgear.worker.views.chat import Message, render
from tests.hardening.conftest import free_port, wait_ready

ADMIN = "admin-secret"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch/transformers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("roots") / "tiny"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_tiny(out, TinySpec(seed=0))
    return out


def test_worker_renders_a_continued_assistant_message(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    msgs = [Message(role="user", content="hi"), Message(role="assistant", content="Hello wor")]
    text = tok.decode(render(tok, msgs, continue_final=True))
    assert text.endswith("<|im_start|>assistant\nHello wor")  # no end of turn, no new turn
    fresh = tok.decode(render(tok, msgs[:1]))
    assert fresh.endswith("<|im_start|>assistant\n")


async def _worker_client(tiny: Path, **worker: Any) -> TestClient[web.Request, web.Application]:
    from switchgear.worker.app import create_worker_app
    from switchgear.worker.keys import SLOT

    settings = parse_settings(
        {
            "auth": {"admin_key": ADMIN},
            "worker": {
                "model": {"model_name_or_path": str(tiny), "name": "tiny"},
                "batch_wait_ms": 1,
                "watch_config": False,
                **worker,
            },
        }
    )
    app = create_worker_app(settings)
    client = TestClient(TestServer(app))
    await client.start_server()
    await app[SLOT].ready()
    return client


async def test_worker_continue_final_message_over_http(tiny):
    client = await _worker_client(tiny)
    try:
        body = {
            "model": "tiny",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hel"},
            ],
            "continue_final_message": True,
            "add_generation_prompt": False,
            "max_tokens": 4,
            "temperature": 0,
        }
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status == 200, await r.text()
        assert (await r.json())["usage"]["completion_tokens"] <= 4
        bad = {**body, "messages": body["messages"][:1]}
        r = await client.post("/v1/chat/completions", json=bad)
        assert r.status == 400 and (await r.json())["error"]["param"] == "messages"
        r = await client.post("/v1/chat/completions", json={**body, "add_generation_prompt": True})
        assert r.status == 400
    finally:
        await client.close()


@pytest.mark.parametrize(
    "path",
    ["/etc", "{root}/../../outside", "relative/../../x"],
)
async def test_worker_swap_outside_model_roots_is_refused(tiny, tmp_path, path):
    (tmp_path / "outside").mkdir()
    client = await _worker_client(tiny, model_roots=[str(tiny.parent)])
    try:
        target = path.format(root=tiny)
        r = await client.post(
            "/admin/swap",
            json={"model_name_or_path": target},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status == 403, await r.text()
        err = (await r.json())["error"]
        assert err["type"] == "permission_error" and err["param"] == "model_name_or_path"
    finally:
        await client.close()


async def test_worker_killed_mid_stream_continues_on_the_other_worker(
    tiny, tmp_path, processes, gateway, http, caplog
):
    caplog.set_level(logging.INFO, logger="switchgear.proxy.resume")
    ports = [free_port(), free_port()]
    procs = {}
    for port in ports:
        args = ["worker", "--model", str(tiny), "--name", "tiny", "--port", str(port)]
        args += ["--host", "127.0.0.1"]
        procs[f"http://127.0.0.1:{port}/v1"] = processes(args, tmp_path, f"w{port}")
    for url, proc in procs.items():
        await wait_ready(url.removesuffix("/v1") + "/health", proc, within=90)
    gw = await gateway(
        {
            "backends": [{"model": "tiny", "url": u} for u in procs],
            "models": {"tiny": {"supports_continuation": True}},
            "timeouts": {"ttft": 10.0, "idle": 10.0, "total": 60.0},
        }
    )
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hello, how are you today?"}],
        "stream": True,
        "max_tokens": 64,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }
    events: list[Any] = []
    async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200
        first = r.headers["x-switchgear-backend"].split(";")[0]
        async for line in r.content:
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            events.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
            text = [e for e in events if isinstance(e, dict) and e.get("choices")]
            if len(text) == 3:
                procs[first].send_signal(signal.SIGKILL)  # mid-stream, after text was sent
    assert events[-1] == "[DONE]", events[-3:]
    assert not any("error" in e for e in events[:-1])
    assert f"stream from {first} resumed on" in caplog.text  # cut, then continued
    assert gw.app[BACKEND_STATE].get(first).consecutive_failures >= 1
    assert len({e["id"] for e in events[:-1]}) == 1
    usage = [e["usage"] for e in events[:-1] if e.get("usage")]
    assert len(usage) == 1 and usage[0]["completion_tokens"] >= 3
    # Later requests go to the surviving worker, without an error.
    body = {**body, "stream": False, "max_tokens": 4}
    del body["stream_options"]
    for _ in range(3):
        async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
            assert r.headers["x-switchgear-backend"].split(";")[0] != first
