"""Upstreams that answer garbage: malformed JSON bodies and SSE give a clean 502, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web

from switchgear.proxy.keys import BACKEND_STATE

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def garbage() -> AsyncIterator[Callable[[bytes, str], object]]:
    """``await garbage(body, content_type)``: an upstream answering 200 with exactly that."""
    runners: list[web.AppRunner] = []

    async def make(body: bytes, content_type: str) -> str:
        async def handle(request: web.Request) -> web.StreamResponse:
            await request.read()
            resp = web.StreamResponse(headers={"Content-Type": content_type})
            await resp.prepare(request)
            await resp.write(body)
            await resp.write_eof()
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    yield make  # type: ignore[misc]
    for r in runners:
        await r.cleanup()


@pytest.mark.parametrize(
    ("body", "ctype", "stream"),
    [
        (b"{not json", "application/json", False),
        (b"<html>502 Bad Gateway</html>", "text/html", False),
        (b"[1, 2, 3]", "application/json", False),
        (b"\xff\xfe\x00garbage", "application/json", False),
        (b"data: {not json\n\ndata: [1]\n\n", "text/event-stream", True),
        (b"event: x\nid: 3\n: comment\n\n", "text/event-stream", True),
        (b"data: " + b"x" * 300_000 + b"\n\n", "text/event-stream", True),
        (b"data: " + b"x" * 3_000_000 + b"\n\n", "text/event-stream", True),
        (b'{"choices": []}', "application/json", True),
    ],
    ids=[
        "json",
        "html",
        "array",
        "binary",
        "sse-bad",
        "sse-no-data",
        "sse-long-line",
        "sse-too-long-line",
        "json-for-sse",
    ],
)
async def test_malformed_upstream_answers_are_a_clean_502(
    garbage, gateway, http, body, ctype, stream
):
    url = await garbage(body, ctype)
    gw = await gateway({"backends": [{"model": "m1", "url": url}]})
    async with http.post(gw.url + "/v1/chat/completions", json={**CHAT, "stream": stream}) as r:
        assert r.status == 502, await r.text()
        err = (await r.json())["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "upstream_error"
    assert gw.app[BACKEND_STATE].get(url).consecutive_failures >= 1  # counted against it


async def test_a_half_malformed_stream_is_never_presented_as_complete(garbage, gateway, http):
    good = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m1",
        "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}],
    }
    body = b"data: " + orjson.dumps(good) + b"\n\ndata: {broken\n\n"  # and then EOF, no [DONE]
    url = await garbage(body, "text/event-stream")
    gw = await gateway({"backends": [{"model": "m1", "url": url}]})
    async with http.post(gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        assert r.status == 200
        lines = [ln[6:].strip() async for ln in r.content if ln.startswith(b"data: ")]
    assert b"[DONE]" not in lines and orjson.loads(lines[-1])["error"]["type"] == "upstream_error"
