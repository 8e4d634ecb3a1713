"""TGI's OpenAI-compatible Messages API (``POST /v1/chat/completions``), for tool calls.

TGI's native ``/generate`` renders no tools, so a chat request with ``tools`` goes to the
Messages API of the same server (TGI 2.0 and later), which renders them with the model's
chat template and answers OpenAI chat shapes, tool calls included. TGI 2.0 sent a tool
call's ``arguments`` as a JSON object rather than a JSON string; they are turned into the
string OpenAI clients expect. A backend whose meta says ``messages_api: "false"`` (an older
TGI) refuses such a request with a 400 naming ``tools``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchgear.default_plugins.protocols import common
from switchgear.errors import InvalidRequest, UpstreamError
from switchgear.types import Backend, PreparedRequest, RequestContext

_NO = frozenset({"false", "0", "no"})


def wants_tools(ctx: RequestContext, body: dict[str, Any]) -> bool:
    """Whether a chat request needs the Messages API: it offers tools the model may call."""
    return (
        ctx.endpoint == "chat.completions"
        and bool(body.get("tools"))
        and body.get("tool_choice") != "none"
    )


def prepare(backend: Backend, body: dict[str, Any]) -> PreparedRequest:
    if str(backend.meta.get("messages_api", "")).lower() in _NO:
        raise InvalidRequest(
            f"tools are not supported by TGI backend {backend.id} (no Messages API)",
            param="tools",
        )
    payload = {**body, "model": backend.meta.get("upstream_model") or "tgi"}
    headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
    return PreparedRequest(
        "POST", backend.url.rstrip("/") + "/v1/chat/completions", payload, headers
    )


def _calls(calls: Any) -> None:
    """Tool calls' object ``arguments`` turned into JSON strings, in place."""
    for call in calls or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), dict | list):
            fn["arguments"] = orjson.dumps(fn["arguments"]).decode()


def decode(backend: Backend, ctx: RequestContext, payload: Any) -> dict[str, Any]:
    data = common.loads(payload)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise UpstreamError(f"TGI backend {backend.id} sent no choices")
    for choice in data["choices"]:
        _calls((choice.get("message") or {}).get("tool_calls"))
    data["model"] = ctx.model
    if isinstance(data.get("usage"), dict):
        ctx.attributes[common.USAGE_KEY] = data["usage"]
    return data


async def stream(
    backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
) -> AsyncIterator[dict[str, Any]]:
    async for chunk in common.json_lines(lines, sse=True):
        if "error" in chunk:
            raise UpstreamError(f"TGI backend {backend.id}: {chunk.get('error')}")
        for choice in chunk.get("choices") or ():
            _calls((choice.get("delta") or {}).get("tool_calls"))
        chunk["model"] = ctx.model
        yield chunk
