"""What the Responses API's translation costs: the same stream as chat chunks and as Responses events.

One process, one event loop: a fast OpenAI-compatible upstream that streams ``--chunks`` chat
chunks, the gateway in front of it, and a client. Rounds alternate between the same request
sent to ``/v1/chat/completions`` (the baseline) and its Responses form sent to
``/v1/responses`` (translated, and each chunk reframed as events), streamed and not, so
drift on a shared machine hits both alike. Printed per scenario: requests per second of both
and the responses/chat ratio of their mean latencies.

    .venv/bin/python bench/responses.py [--quick] [--seconds 1.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy.app import create_app
from switchgear.proxy.server import start
from switchgear.settings import parse_settings

PLUGINS = (
    "switchgear.default_plugins.static_discovery",
    "switchgear.default_plugins.balancing",
    "switchgear.default_plugins.openai_adapter",
)


def upstream_app(chunks: int) -> web.Application:
    def chunk(i: int) -> bytes:
        choice = {"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}
        if i == chunks - 1:
            choice["finish_reason"] = "stop"
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "bench"}
        return b"data: " + orjson.dumps({**body, "choices": [choice]}) + b"\n\n"

    usage = {"prompt_tokens": 3, "completion_tokens": chunks, "total_tokens": 3 + chunks}
    stream = b"".join(chunk(i) for i in range(chunks)) + b"data: [DONE]\n\n"
    message = {"role": "assistant", "content": " ".join(f"w{i}" for i in range(chunks))}
    answer = orjson.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "bench",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage,
        }
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if not body.get("stream"):
            return web.Response(body=answer, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(stream)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    return app


async def one_round(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], seconds: float
) -> list[float]:
    took: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        async with session.post(url, json=body) as r:
            assert r.status == 200, await r.text()
            await r.read()
        took.append(time.perf_counter() - t0)
    return took


async def main(args: argparse.Namespace) -> None:
    up = web.AppRunner(upstream_app(args.chunks), access_log=None)
    await up.setup()
    site = web.TCPSite(up, "127.0.0.1", 0)
    await site.start()
    up_url = f"http://127.0.0.1:{up.addresses[0][1]}/v1"
    settings = parse_settings({"backends": [{"model": "bench", "url": up_url}]})
    pm = make_plugin_manager(load_entrypoints=False, builtins=PLUGINS)
    gw = await start(create_app(settings, plugin_manager=pm), settings, host="127.0.0.1", port=0)
    base = f"http://127.0.0.1:{gw.addresses[0][1]}/v1"
    chat = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    resp = {"model": "bench", "input": "hi", "max_output_tokens": 64}
    try:
        async with aiohttp.ClientSession() as session:
            for stream in (False, True):
                times: dict[str, list[float]] = {"chat": [], "responses": []}
                for _ in range(args.rounds):
                    times["chat"] += await one_round(
                        session,
                        base + "/chat/completions",
                        {**chat, "stream": stream},
                        args.seconds,
                    )
                    times["responses"] += await one_round(
                        session, base + "/responses", {**resp, "stream": stream}, args.seconds
                    )
                c, r = (statistics.fmean(times[k]) for k in ("chat", "responses"))
                print(
                    f"{'stream' if stream else 'json':6}  chat {1 / c:8.0f} req/s   "
                    f"responses {1 / r:8.0f} req/s   responses/chat latency {r / c:5.2f}x"
                )
    finally:
        await gw.cleanup()
        await up.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=32, help="chunks per streamed answer")
    ap.add_argument("--quick", action="store_true", help="one short round per target")
    ns = ap.parse_args()
    if ns.quick:
        ns.seconds, ns.rounds = 0.3, 1
    asyncio.run(main(ns))
