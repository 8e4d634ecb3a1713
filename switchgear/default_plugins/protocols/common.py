"""Building OpenAI-shaped responses and chunks, and reading upstream lines, for every adapter.

Adapters stream OpenAI chunk dicts; the gateway frames them as SSE and sends ``[DONE]``.
A stream ends with a chunk carrying ``finish_reason`` and, when the client asked with
``stream_options.include_usage``, a usage chunk with empty ``choices``. The usage is also
left in ``ctx.attributes["usage"]`` for the gateway's metrics whether or not it was asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchgear.errors import InvalidRequest, UpstreamError
from switchgear.types import RequestContext

log = logging.getLogger("switchgear.adapters")

USAGE_KEY = "usage"


def response_id(ctx: RequestContext) -> str:
    prefix = "chatcmpl" if ctx.endpoint == "chat.completions" else "cmpl"
    return f"{prefix}-{ctx.request_id}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    ctx: RequestContext,
    text: str,
    finish_reason: str | None,
    use: dict[str, int],
    *,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A non-streaming OpenAI response (chat.completion or text_completion) for ``ctx``."""
    ctx.attributes[USAGE_KEY] = use
    base = {"id": response_id(ctx), "created": int(time.time()), "model": ctx.model, "usage": use}
    if ctx.endpoint == "chat.completions":
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            message["tool_calls"] = tool_calls
            message["content"] = text or None
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "object": "chat.completion", "choices": [choice]}
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {**base, "object": "text_completion", "choices": [choice]}


class ChunkWriter:
    """Makes the chunks of one streamed response (same id and timestamp throughout)."""

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.id = response_id(ctx)
        self.created = int(time.time())
        self.chat = ctx.endpoint == "chat.completions"
        self.started = False

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.ctx.model,
            "choices": choices,
        }

    def delta(
        self,
        text: str = "",
        finish_reason: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        if not self.chat:
            return self._chunk(
                [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]
            )
        delta: dict[str, Any] = {}
        if not self.started:
            delta["role"] = "assistant"
            self.started = True
        if text or finish_reason is None:
            delta["content"] = text
        if tool_calls:
            delta["tool_calls"] = tool_calls
        return self._chunk(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )

    def usage(self, use: dict[str, int]) -> dict[str, Any] | None:
        """The usage chunk when the client asked for one; records usage for metrics either way."""
        self.ctx.attributes[USAGE_KEY] = use
        opts = self.ctx.body.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage"):
            return {**self._chunk([]), "usage": use}
        return None


def max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if value else None


def stop_list(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else []


def require_generation(ctx: RequestContext, protocol: str) -> None:
    if ctx.endpoint not in ("chat.completions", "completions"):
        raise InvalidRequest(
            f"{ctx.endpoint} is not available on {protocol} backends", param="model"
        )


def first_prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise InvalidRequest("this backend takes one string prompt per request", param="prompt")
        return prompt[0]
    return str(prompt)


def loads(payload: Any) -> Any:
    """A decoded JSON payload (bytes and str are parsed); malformed JSON is an upstream error."""
    if isinstance(payload, bytes | bytearray | memoryview | str):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamError("backend sent a response that is not JSON") from None
    return payload


async def json_lines(lines: AsyncIterator[bytes], *, sse: bool) -> AsyncIterator[dict[str, Any]]:
    """JSON objects from NDJSON lines or SSE ``data:`` lines; malformed frames are logged, skipped.

    An SSE ``data: [DONE]`` ends the iteration.
    """
    async for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if sse:
            if not line.startswith(b"data:"):
                continue  # event:, id:, retry: and ":" comments
            line = line[5:].strip()
            if line == b"[DONE]":
                return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("skipped a malformed frame from the backend: %r", line[:200])
            continue
        if isinstance(obj, dict):
            yield obj
