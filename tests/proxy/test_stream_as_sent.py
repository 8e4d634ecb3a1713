"""Chunks that nothing changes reach the client as the backend sent their JSON.

Well-formed chunks after the first keep their bytes (spacing, escapes; the first, read
before the relay starts, is encoded again); malformed frames are still dropped,
a frame with a ``\\r`` inside (a line break for an SSE client) is encoded again, and where a
``rewrite_response`` implementation acts the chunks are encoded again after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from switchgear import hookimpl
from tests.proxy.conftest import GatewayFactory

ROLE = b'{"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}'
BODY = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}
SPACED = (
    b'{"id": "c1", "model": "m1", "choices": [{"index": 0, "delta": {"content": "caf\\u00e9"}}]}'
)
CR = b'{"id": "c1",\r"choices": [{"index": 0, "delta": {"content": " ok"}}]}'
LAST = b'{"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}'
SENT = (
    b"data: " + ROLE + b"\n\n"
    b"data: " + SPACED + b"\n\n"
    b"data: {not json\n\n"
    b"data:  " + SPACED + b"  \r\n\r\n"
    b"data: " + CR + b"\n\n"
    b"data: " + LAST + b"\n\n"
    b"data: [DONE]\n\n"
)


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    """A backend whose stream is :data:`SENT`, a frame per write; yields its base URL."""

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for frame in SENT.split(b"\n\n")[:-1]:
            await resp.write(frame + b"\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/v1"))
    await server.close()


class Tagged:
    """Appends ``!`` to every content delta."""

    @hookimpl
    def rewrite_response(self, ctx: Any, body: dict[str, Any], backend: Any) -> Any:
        for choice in body.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                choice["delta"]["content"] += "!"
        return body


async def _received(
    gateway: GatewayFactory, http: Any, url: str, plugins: tuple[object, ...]
) -> bytes:
    gw = await gateway({"backends": [{"model": "m1", "url": url}]}, plugins=plugins)
    async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
        assert r.status == 200
        return bytes(await r.read())


async def test_plain_chunks_keep_the_bytes_the_backend_sent(gateway, http, backend):
    got = await _received(gateway, http, backend, ())
    frames = got.split(b"\n\n")
    assert frames[0] == b"data: " + orjson.dumps(orjson.loads(ROLE))
    assert frames[1:3] == [b"data: " + SPACED, b"data: " + SPACED]  # the malformed one dropped
    assert frames[3] == b"data: " + orjson.dumps(orjson.loads(CR))  # no \r reaches the client
    assert frames[4:] == [b"data: " + LAST, b"data: [DONE]", b""]


async def test_chunks_a_plugin_rewrites_are_encoded_again(gateway, http, backend):
    got = await _received(gateway, http, backend, (Tagged(),))
    events = [orjson.loads(f[6:]) for f in got.split(b"\n\n") if f and f != b"data: [DONE]"]
    contents = [e["choices"][0]["delta"].get("content") for e in events]
    assert contents == [None, "café!", "café!", " ok!", None]
    assert b"\\u00e9" not in got and got.endswith(b"data: [DONE]\n\n")
