"""A fault-injecting OpenAI-compatible upstream for tests, served by aiohttp on loopback.

Usage::

    async with FakeUpstream(model="m1", name="a") as up:      # starts on a free port
        up.url                                                # "http://127.0.0.1:PORT/v1"
        up.fault(Fault(status=503, retry_after=1))            # next request only
        up.fault(Fault(reset=True), times=3)                  # next three requests
        up.always = Fault(silence=True)                       # every request, until reset to None
        up.fault(Fault(redirect=other.url + "/chat/completions", redirect_status=302))
        ...
        await up.wait_requests(2)                             # until 2 requests were received
        await up.wait_disconnect()                            # until a client went away mid-request
        up.requests[-1].body, up.requests[-1].headers         # what the gateway sent

Routes: POST /v1/chat/completions, /v1/completions (streaming or not, ``stream_options.
include_usage`` honoured), /v1/embeddings, GET /v1/models; with ``responses=True`` also
POST /v1/responses. ``tool_calls=[ToolCall(...)]`` makes chat answers tool calls, streamed
as tool-call deltas (:mod:`tests.fakes.answers`). Answers name the upstream
(``"hello from a"``) so a test can tell which replica answered. Queued faults apply in
order, one per request; ``always`` applies when the queue is empty.

Handlers run with ``handler_cancellation=True``: a client that disconnects cancels the
handler, which is counted in ``disconnects`` (this is how tests see upstream cancellation).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.answers import (
    ToolCall,
    response_events,
    response_object,
    tool_deltas,
    tool_message,
)

_DROPPED = web.RequestKey("fake_dropped", bool)  # the fake itself cut the connection


@dataclass
class Fault:
    """What the fake does to one request; unset fields mean normal behaviour."""

    status: int | None = None  # answer with this HTTP status and an OpenAI error body
    error: dict[str, Any] | None = None  # the error object for ``status`` (default: generic)
    retry_after: float | str | None = None  # Retry-After header sent with ``status``
    error_body: dict[str, Any] | None = None  # the whole body sent with ``status`` (not OpenAI's)
    reset: bool = False  # drop the connection without answering
    silence: bool = False  # never answer (until the client goes away)
    first_delay: float = 0.0  # seconds before the answer (non-streaming) / the first chunk
    chunk_delay: float = 0.0  # seconds between stream chunks
    cut_after: int | None = None  # streaming: close the connection after N chunks
    stall_after: int | None = None  # streaming: stop sending, connection open, after N chunks
    malformed_at: int | None = None  # streaming: a malformed frame before chunk N
    omit_done: bool = False  # streaming: end the response without ``data: [DONE]``
    body: dict[str, Any] | None = None  # non-streaming: answer this body instead
    redirect: str | None = None  # answer ``redirect_status`` with this Location
    redirect_status: int = 307
    slow_first_token: float = 0.0  # headers at once, the first chunk / the body this late
    json_for_stream: bool = False  # answer a stream request with one JSON body
    sse_for_json: bool = False  # answer a non-streaming request with an SSE stream


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any
    peer: Any = None  # (host, port) of the client connection: equal ports = a reused connection
    at: float = field(default_factory=time.monotonic)


class FakeUpstream:
    def __init__(
        self,
        model: str = "m1",
        *,
        name: str | None = None,
        chunks: int = 4,
        host: str = "127.0.0.1",
        tool_calls: list[ToolCall] | None = None,
        responses: bool = False,
    ):
        self.model, self.name, self.chunks, self.host = model, name or model, chunks, host
        self.tool_calls, self.responses = tool_calls, responses
        self.always: Fault | None = None
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: deque[Fault] = deque()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- control ------------------------------------------------------------------------

    def fault(self, fault: Fault, times: int = 1) -> None:
        self._faults.extend([fault] * times)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def wait_requests(self, n: int, within: float = 10.0) -> None:
        """Until ``n`` requests were received in total (TimeoutError after ``within`` s)."""
        await self._wait(lambda: len(self.requests) >= n, within)

    async def wait_disconnect(self, n: int = 1, within: float = 10.0) -> None:
        """Until ``n`` requests in total were abandoned by their client mid-answer."""
        await self._wait(lambda: self.disconnects >= n, within)

    async def _wait(self, predicate: Any, within: float) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> FakeUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/embeddings", self._handle)
        if self.responses:
            app.router.add_post("/v1/responses", self._handle)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- handlers -----------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(
            Recorded(
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                body,
                request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        fault = self._faults.popleft() if self._faults else self.always
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await self._notify()
        try:
            f = fault or Fault()
            if f.reset or f.silence:
                request[_DROPPED] = f.reset
                if f.reset and request.transport is not None:
                    request.transport.abort()
                await asyncio.Event().wait()  # cancelled when the connection goes
            if f.redirect is not None:
                return web.Response(status=f.redirect_status, headers={"Location": f.redirect})
            if f.status is not None:
                await asyncio.sleep(f.first_delay)
                return self._error(f)
            if (body.get("stream") and not f.json_for_stream) or f.sse_for_json:
                return await self._stream(request, body, f)
            await asyncio.sleep(f.first_delay)
            return await self._json(request, f.body or self._complete(request.path, body), f)
        except asyncio.CancelledError:
            if not request.get(_DROPPED, False):
                self.disconnects += 1
                asyncio.get_running_loop().create_task(self._notify())
            raise
        finally:
            self.in_flight -= 1

    async def _json(
        self, request: web.Request, payload: dict[str, Any], f: Fault
    ) -> web.StreamResponse:
        if not f.slow_first_token:
            return web.Response(body=orjson.dumps(payload), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await asyncio.sleep(f.slow_first_token)
        await resp.write(orjson.dumps(payload))
        await resp.write_eof()
        return resp

    def _error(self, f: Fault) -> web.Response:
        err = f.error or {
            "message": f"injected {f.status}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
        return web.Response(
            status=f.status or 500,
            body=orjson.dumps(f.error_body or {"error": err}),
            content_type="application/json",
            headers=headers,
        )

    def _complete(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        usage = {
            "prompt_tokens": 3,
            "completion_tokens": self.chunks,
            "total_tokens": 3 + self.chunks,
        }
        if path.endswith("/embeddings"):
            inputs = body.get("input")
            n = len(inputs) if isinstance(inputs, list) else 1
            return {
                "object": "list",
                "model": self.model,
                "usage": {"prompt_tokens": n, "total_tokens": n},
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, float(i)]}
                    for i in range(n)
                ],
            }
        if path.endswith("/responses"):
            return response_object(self.name, self.model, body, "completed")
        text = f"hello from {self.name}"
        if path.endswith("/chat/completions"):
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
            if self.tool_calls:
                choice["message"] = tool_message(self.tool_calls)
                choice["finish_reason"] = "tool_calls"
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [choice],
                "usage": usage,
            }
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        }

    def _chunk(self, chat: bool, i: int, last: bool) -> dict[str, Any]:
        text = f"{self.name}{i} "
        finish = "stop" if last else None
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": text},
                "finish_reason": finish,
            }
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": [choice],
            }
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
        }

    def _frames(self, path: str, body: dict[str, Any]) -> list[bytes]:
        """The SSE frames of a streamed answer, before the usage chunk and ``[DONE]``."""
        if path.endswith("/responses"):
            return [
                b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
                for e in response_events(self.name, self.model, body)
            ]
        chat = path.endswith("/chat/completions")
        if chat and self.tool_calls:
            deltas = list(tool_deltas(self.tool_calls))
            chunks = [self._delta(d, None) for d in deltas]
            chunks.append(self._delta({}, "tool_calls"))
        else:
            chunks = [self._chunk(chat, i, i == self.chunks - 1) for i in range(self.chunks)]
        return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]

    def _delta(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    async def _stream(
        self, request: web.Request, body: dict[str, Any], f: Fault
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(f.first_delay + f.slow_first_token)
        for i, frame in enumerate(self._frames(request.path, body)):
            if f.malformed_at == i:
                await resp.write(b"data: {this is not json\n\n")
            if f.cut_after == i:
                assert request.transport is not None
                request[_DROPPED] = True
                request.transport.close()
                await asyncio.Event().wait()
            if f.stall_after == i:
                await asyncio.Event().wait()
            if i and f.chunk_delay:
                await asyncio.sleep(f.chunk_delay)
            await resp.write(frame)
        if request.path.endswith("/responses"):  # the Responses API sends no [DONE]
            await resp.write_eof()
            return resp
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": 3,
                "completion_tokens": self.chunks,
                "total_tokens": 3 + self.chunks,
            }
            await resp.write(
                b"data: "
                + orjson.dumps(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
                + b"\n\n"
            )
        if not f.omit_done:
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
