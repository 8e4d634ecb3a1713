"""The adapter for OpenAI-compatible backends (``protocol: openai``): the default one.

``protocol: vllm`` is the same protocol, from a server known to continue a final assistant
message (``continue_final_message``), so a stream cut elsewhere may resume there.

A Responses API request goes to ``{url}/responses`` as the client sent it when the backend
has ``supports_responses`` in its meta (its events end with ``response.completed``, not
``[DONE]``); otherwise its chat translation goes to ``/chat/completions``.

Requests pass through untouched (every OpenAI field the client sent reaches the backend:
``tools``, ``tool_choice`` and ``response_format`` included, and streamed ``tool_calls``
deltas come back as they were sent);
streams are parsed from SSE ``data:`` lines into chunk dicts. A malformed frame is dropped
and logged, never forwarded; a stream that ends without ``data: [DONE]`` raises
:class:`~switchgear.errors.UpstreamError` so the gateway never presents a truncated answer
as complete.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from switchgear.errors import UpstreamError
from switchgear.plugins.hookspecs import hookimpl
from switchgear.proxy.responses import goes_native, native_body
from switchgear.proxy.sselines import Lines
from switchgear.types import Backend, PreparedRequest, RequestContext

log = logging.getLogger("switchgear.adapters.openai")

PATHS = {
    "chat.completions": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
_JSON = {"Content-Type": "application/json"}
RESPONSES_PATH = "/responses"
#: The events that end a Responses stream.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class OpenAIAdapter:
    name = "openai"

    def prepare(
        self, backend: Backend, ctx: RequestContext, body: dict[str, Any]
    ) -> PreparedRequest:
        headers = {"Content-Type": "application/json", "X-Request-Id": ctx.request_id}
        if backend.api_key:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        if goes_native(backend, ctx):
            assert ctx.request is not None and ctx.request.responses is not None
            payload = native_body(ctx.request.responses, body)
            return PreparedRequest("POST", backend.url + RESPONSES_PATH, payload, headers)
        return PreparedRequest("POST", backend.url + PATHS[ctx.endpoint], body, headers)

    def decode(self, backend: Backend, ctx: RequestContext, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise UpstreamError(f"backend {backend.id} returned a non-object JSON body")
        return payload

    def stream(
        self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
    ) -> AsyncIterator[dict[str, Any]]:
        if goes_native(backend, ctx):
            return _events(backend, ctx, lines)
        return _data(backend, ctx, lines)


class DataStream:
    """The JSON objects of a stream's ``data:`` lines, until ``[DONE]``.

    A malformed frame is dropped and logged; an error object, or the end of the stream
    before ``[DONE]``, raises :class:`UpstreamError`, once the chunks before it were handed
    out. It is an async iterator of chunks (the adapter contract), and the gateway may take
    the chunks a network read at a time instead (:meth:`next_batch`, the gateway's
    :class:`Lines` read per read), which spares an async step per chunk. Either way, or
    both in turn, each chunk is handed out once, in order.
    """

    __slots__ = ("backend", "ctx", "reads", "ready", "error", "ended")

    def __init__(self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]) -> None:
        self.backend, self.ctx = backend, ctx
        self.reads = lines.reads() if isinstance(lines, Lines) else _one_by_one(lines)
        self.ready: list[dict[str, Any]] = []  # decoded, not handed out yet, last first
        self.error: UpstreamError | None = None  # to raise once ``ready`` is handed out
        self.ended = False

    def __aiter__(self) -> DataStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self.ready:
            batch = await self._next_read()
            if not batch:
                raise StopAsyncIteration
            batch.reverse()
            self.ready = batch
        return self.ready.pop()

    async def next_batch(self) -> list[dict[str, Any]]:
        """The chunks not handed out yet, else those of the next read that has any; ``[]``
        after ``[DONE]``."""
        if self.ready:
            out = self.ready[::-1]
            self.ready = []
            return out
        return await self._next_read()

    async def aclose(self) -> None:
        self.ended = True
        await self.reads.aclose()  # type: ignore[attr-defined]

    async def _next_read(self) -> list[dict[str, Any]]:
        while True:
            if self.error is not None:
                err, self.error, self.ended = self.error, None, True
                raise err
            if self.ended:
                return []
            batch = await anext(self.reads, None)
            if batch is None:
                self.ended = True
                raise UpstreamError(f"backend {self.backend.id} ended the stream without [DONE]")
            chunks = self._decode(batch)
            if chunks:
                return chunks

    def _decode(self, batch: list[bytes]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for raw in batch:
            if not raw.startswith(b"data:"):
                continue  # blank separators, comments (": keep-alive"), event:/id: fields
            data = raw[5:].strip()
            if data == b"[DONE]":
                self.ended = True
                break
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                log.warning(
                    "request %s: dropped malformed chunk from %s: %.200r",
                    self.ctx.request_id,
                    self.backend.id,
                    data,
                )
                continue
            if type(chunk) is not dict:
                log.warning(
                    "request %s: dropped non-object chunk from %s",
                    self.ctx.request_id,
                    self.backend.id,
                )
                continue
            if ("error" in chunk and "choices" not in chunk) or chunk.get("type") == "error":
                err = chunk.get("error", chunk)
                msg = err.get("message") if isinstance(err, dict) else str(err)
                self.error = UpstreamError(
                    f"backend {self.backend.id} reported an error mid-stream: {msg}"
                )
                break
            out.append(chunk)
        return out


def _data(backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]) -> DataStream:
    return DataStream(backend, ctx, lines)


async def _one_by_one(lines: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    async for line in lines:
        yield [line]


async def _events(
    backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
) -> AsyncIterator[dict[str, Any]]:
    """A native Responses stream's events, up to its terminal event (no ``[DONE]`` follows)."""
    events = _data(backend, ctx, lines)
    try:
        async for event in events:
            yield event
            if event.get("type") in _TERMINAL:
                return
    finally:
        await events.aclose()
    raise UpstreamError(f"backend {backend.id} ended the stream before response.completed")


_ADAPTER = OpenAIAdapter()


@hookimpl(trylast=True)
def register_adapters(register: Callable[[str, OpenAIAdapter], None]) -> None:
    register("openai", _ADAPTER)
    register("vllm", _ADAPTER)
