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


async def _data(
    backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a stream's ``data:`` lines, until ``[DONE]``.

    A malformed frame is dropped and logged; an error object, or the end of the stream
    before ``[DONE]``, raises :class:`UpstreamError`. The gateway's :class:`Lines` are read
    a network read at a time.
    """
    reads = lines.reads() if isinstance(lines, Lines) else _one_by_one(lines)
    try:
        async for batch in reads:
            for raw in batch:
                if not raw.startswith(b"data:"):
                    continue  # blank separators, comments (": keep-alive"), event:/id: fields
                data = raw[5:].strip()
                if data == b"[DONE]":
                    return
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    log.warning(
                        "request %s: dropped malformed chunk from %s: %.200r",
                        ctx.request_id,
                        backend.id,
                        data,
                    )
                    continue
                if type(chunk) is not dict:
                    log.warning(
                        "request %s: dropped non-object chunk from %s", ctx.request_id, backend.id
                    )
                    continue
                if ("error" in chunk and "choices" not in chunk) or chunk.get("type") == "error":
                    err = chunk.get("error", chunk)
                    msg = err.get("message") if isinstance(err, dict) else str(err)
                    raise UpstreamError(f"backend {backend.id} reported an error mid-stream: {msg}")
                yield chunk
    finally:
        await reads.aclose()  # type: ignore[attr-defined]
    raise UpstreamError(f"backend {backend.id} ended the stream without [DONE]")


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
        await events.aclose()  # type: ignore[attr-defined]
    raise UpstreamError(f"backend {backend.id} ended the stream before response.completed")


_ADAPTER = OpenAIAdapter()


@hookimpl(trylast=True)
def register_adapters(register: Callable[[str, OpenAIAdapter], None]) -> None:
    register("openai", _ADAPTER)
    register("vllm", _ADAPTER)
