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
    :class:`Lines` read per read), which spares an async step per chunk, or with the
    client's frames for them (:meth:`next_frames`), which spares encoding them again.
    Either way, or all in turn, each chunk is handed out once, in order.
    """

    __slots__ = ("backend", "ctx", "reads", "ready", "datas", "pos", "error", "ended")

    def __init__(self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]) -> None:
        self.backend, self.ctx = backend, ctx
        self.reads = lines.reads() if isinstance(lines, Lines) else _one_by_one(lines)
        self.ready: list[dict[str, Any]] = []  # the chunks of the last read that had any
        self.datas: list[bytes] = []  # their JSON as the backend sent it
        self.pos = 0  # how many of ``ready`` were handed out
        self.error: UpstreamError | None = None  # to raise once ``ready`` is handed out
        self.ended = False

    def __aiter__(self) -> DataStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.pos >= len(self.ready) and not await self._fill():
            raise StopAsyncIteration
        self.pos += 1
        return self.ready[self.pos - 1]

    async def next_batch(self) -> list[dict[str, Any]]:
        """The chunks not handed out yet, else those of the next read that has any; ``[]``
        after ``[DONE]``."""
        if self.pos >= len(self.ready) and not await self._fill():
            return []
        pos, self.pos = self.pos, len(self.ready)
        return self.ready[pos:] if pos else self.ready

    async def next_frames(self) -> tuple[list[dict[str, Any]], bytes]:
        """:meth:`next_batch`, and the chat SSE frames of those chunks: each one's JSON as
        the backend sent it (it decoded, so it is well-formed), ``([], b"")`` at the end.

        A chunk whose JSON holds a ``\\r`` (whitespace for JSON, a line break for an SSE
        client) is encoded again instead.
        """
        chunks = await self.next_batch()
        if not chunks:
            return chunks, b""
        datas = self.datas if len(chunks) == len(self.datas) else self.datas[-len(chunks) :]
        frames = b"data: " + b"\n\ndata: ".join(datas) + b"\n\n"
        if b"\r" in frames:
            frames = b"".join(
                [
                    b"data: " + (orjson.dumps(c) if b"\r" in d else d) + b"\n\n"
                    for c, d in zip(chunks, datas, strict=True)
                ]
            )
        return chunks, frames

    async def aclose(self) -> None:
        self.ended = True
        await self.reads.aclose()  # type: ignore[attr-defined]

    async def _fill(self) -> bool:
        """Decode the next read that has chunks into ``ready``; False at the end."""
        while True:
            if self.error is not None:
                err, self.error, self.ended = self.error, None, True
                raise err
            if self.ended:
                return False
            batch = await anext(self.reads, None)
            if batch is None:
                self.ended = True
                raise UpstreamError(f"backend {self.backend.id} ended the stream without [DONE]")
            chunks, datas = self._decode(batch)
            if chunks:
                self.ready, self.datas, self.pos = chunks, datas, 0
                return True

    def _decode(self, batch: list[bytes]) -> tuple[list[dict[str, Any]], list[bytes]]:
        out: list[dict[str, Any]] = []
        datas: list[bytes] = []
        loads, keep, keep_data = orjson.loads, out.append, datas.append
        for raw in batch:
            if not raw or not raw.startswith(b"data:"):
                continue  # blank separators, comments (": keep-alive"), event:/id: fields
            data = raw[5:].strip()
            if data == b"[DONE]":
                self.ended = True
                break
            try:
                chunk = loads(data)
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
            if ("error" in chunk or "type" in chunk) and (
                ("error" in chunk and "choices" not in chunk) or chunk.get("type") == "error"
            ):
                err = chunk.get("error", chunk)
                msg = err.get("message") if isinstance(err, dict) else str(err)
                self.error = UpstreamError(
                    f"backend {self.backend.id} reported an error mid-stream: {msg}"
                )
                break
            keep(chunk)
            keep_data(data)
        return out, datas


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
