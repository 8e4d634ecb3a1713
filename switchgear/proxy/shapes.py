"""Upstream answers whose shape contradicts the request, turned into the shape asked for.

A backend may answer a stream request with one JSON body (servers without streaming, or an
adapter's completion endpoint that ignores ``stream``), or a non-streaming request with an
SSE stream. The client always gets what it asked for: a JSON body becomes the chunks of a
stream (one content chunk per choice, then the usage chunk when ``stream_options.
include_usage`` asked for it); a stream is read to its end and collected into one body. An
answer without choices stays an upstream error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from switchgear.errors import UpstreamError
from switchgear.types import RequestContext

_SSE = "text/event-stream"


def is_json(resp: aiohttp.ClientResponse) -> bool:
    return resp.content_type == "application/json"


def is_sse(resp: aiohttp.ClientResponse) -> bool:
    return resp.content_type == _SSE


def _choices(body: dict[str, Any], backend_id: str) -> list[dict[str, Any]]:
    choices = body.get("choices")
    if (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, dict) for c in choices)
    ):
        raise UpstreamError(f"backend {backend_id} sent an answer without choices")
    return choices


def _chunk_choice(choice: dict[str, Any], i: int, chat: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": choice.get("index", i),
        "logprobs": choice.get("logprobs"),
        "finish_reason": choice.get("finish_reason") or "stop",
    }
    if not chat:
        out["text"] = str(choice.get("text") or "")
        return out
    raw = choice.get("message")
    message: dict[str, Any] = raw if isinstance(raw, dict) else {}
    delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
    if message.get("tool_calls"):
        delta["tool_calls"] = [
            {**call, "index": call.get("index", k)} for k, call in enumerate(message["tool_calls"])
        ]
    out["delta"] = delta
    return out


def as_chunks(ctx: RequestContext, body: dict[str, Any], backend_id: str) -> list[dict[str, Any]]:
    """The stream chunks of a complete (non-streaming) answer ``body``."""
    chat = ctx.endpoint == "chat.completions"
    head = {
        "id": body.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": body.get("created"),
        "model": body.get("model") or ctx.model,
    }
    chunks = [
        {**head, "choices": [_chunk_choice(c, i, chat)]}
        for i, c in enumerate(_choices(body, backend_id))
    ]
    opts = ctx.body.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage") and isinstance(body.get("usage"), dict):
        chunks.append({**head, "choices": [], "usage": body["usage"]})
    return chunks


async def replay(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


class _Choice:
    __slots__ = ("finish", "parts", "role", "tools")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.role = "assistant"
        self.finish: str | None = None
        self.tools: dict[int, dict[str, Any]] = {}

    def add(self, choice: dict[str, Any], chat: bool) -> None:
        self.finish = choice.get("finish_reason") or self.finish
        if not chat:
            self.parts.append(str(choice.get("text") or ""))
            return
        raw = choice.get("delta")
        delta: dict[str, Any] = raw if isinstance(raw, dict) else {}
        self.role = delta.get("role") or self.role
        if isinstance(delta.get("content"), str):
            self.parts.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._tool(call)

    def _tool(self, call: dict[str, Any]) -> None:
        slot = self.tools.setdefault(
            call.get("index", len(self.tools)), {"type": "function", "function": {}}
        )
        if call.get("id"):
            slot["id"] = call["id"]
        raw = call.get("function")
        fn: dict[str, Any] = raw if isinstance(raw, dict) else {}
        got = slot["function"]
        if fn.get("name"):
            got["name"] = fn["name"]
        got["arguments"] = got.get("arguments", "") + str(fn.get("arguments") or "")

    def body(self, index: int, chat: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"index": index, "logprobs": None, "finish_reason": self.finish}
        if not chat:
            out["text"] = "".join(self.parts)
            return out
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.parts)}
        if self.tools:
            message["tool_calls"] = [self.tools[k] for k in sorted(self.tools)]
            message["content"] = message["content"] or None
        out["message"] = message
        return out


async def collect(
    ctx: RequestContext, chunks: AsyncIterator[dict[str, Any]], backend_id: str
) -> dict[str, Any]:
    """One non-streaming answer from a whole stream of chunks."""
    chat = ctx.endpoint == "chat.completions"
    choices: dict[int, _Choice] = {}
    head: dict[str, Any] = {}
    usage = None
    async for chunk in chunks:
        head = head or chunk
        usage = chunk.get("usage") if isinstance(chunk.get("usage"), dict) else usage
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                choices.setdefault(choice.get("index", 0), _Choice()).add(choice, chat)
    if not choices:
        raise UpstreamError(f"backend {backend_id} sent a stream without choices")
    body: dict[str, Any] = {
        "id": head.get("id"),
        "object": "chat.completion" if chat else "text_completion",
        "created": head.get("created"),
        "model": head.get("model") or ctx.model,
        "choices": [choices[i].body(i, chat) for i in sorted(choices)],
    }
    if usage is not None:
        body["usage"] = usage
    return body
