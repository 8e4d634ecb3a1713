"""Ollama's native API: ``POST /api/chat`` (and ``/api/generate`` for plain completions).

``backend.url`` is the server root (``http://host:11434``). Wire format::

    POST /api/chat {"model": "llama3", "messages": [...], "stream": true,
                    "options": {"num_predict": 64, "temperature": 0.2, "stop": [...]}}
    ← NDJSON: {"model":…,"created_at":…,"message":{"role":"assistant","content":"Hi"},"done":false}
              … {"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",
                 "prompt_eval_count":26,"eval_count":298, …}
    with "stream": false, one such object with the whole message and ``done: true``.
    An error is {"error": "…"} (as the body, or as one line of a stream).

Tool calls pass both ways (Ollama's arguments are objects, OpenAI's are JSON strings;
``tool_choice`` ``none`` keeps the tools back, and a forced choice is a 400 naming it);
``response_format`` becomes Ollama's ``format`` (``"json"`` or the JSON schema).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchgear.default_plugins.protocols import common
from switchgear.errors import InvalidRequest, UpstreamError
from switchgear.proxy.text import content_text
from switchgear.types import Backend, PreparedRequest, RequestContext

OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}


def _message(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.get("role"), "content": content_text(m.get("content"))}
    if out["role"] == "developer":
        out["role"] = "system"
    images = [
        p["image_url"]["url"].split(",", 1)[-1]
        for p in m.get("content") or []
        if isinstance(m.get("content"), list)
        and isinstance(p, dict)
        and p.get("type") == "image_url"
    ]
    if images:
        out["images"] = images
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {
                "function": {
                    "name": c["function"]["name"],
                    "arguments": _args_obj(c["function"].get("arguments")),
                }
            }
            for c in m["tool_calls"]
        ]
    return out


def _tool_choice(choice: Any) -> bool:
    """Whether the tools go to Ollama: ``auto`` (or unset) yes, ``none`` no; others refused.

    Ollama lets the model decide and cannot be made to call a tool.
    """
    if choice in (None, "auto"):
        return True
    if choice == "none":
        return False
    raise InvalidRequest(
        "Ollama backends take tool_choice auto or none only: they cannot force a tool call",
        param="tool_choice",
    )


def _args_obj(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments or "{}")
        except orjson.JSONDecodeError:
            return {}
    return arguments or {}


def _tool_calls(calls: Any, ctx: RequestContext) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls or []):
        fn = call.get("function") or {}
        args = fn.get("arguments", {})
        out.append(
            {
                "index": i,
                "id": f"call_{ctx.request_id}_{i}",
                "type": "function",
                "function": {
                    "name": fn.get("name", ""),
                    "arguments": args if isinstance(args, str) else orjson.dumps(args).decode(),
                },
            }
        )
    return out


def _finish(data: dict[str, Any], tools: bool) -> str:
    if tools:
        return "tool_calls"
    return "length" if data.get("done_reason") == "length" else "stop"


def _usage(data: dict[str, Any]) -> dict[str, int]:
    return common.usage(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))


class OllamaAdapter:
    name = "ollama"

    def prepare(
        self, backend: Backend, ctx: RequestContext, body: dict[str, Any]
    ) -> PreparedRequest:
        common.require_generation(ctx, "Ollama")
        options: dict[str, Any] = {
            o: body[k] for k, o in OPTIONS.items() if body.get(k) is not None
        }
        if common.max_tokens(body):
            options["num_predict"] = common.max_tokens(body)
        if common.stop_list(body):
            options["stop"] = common.stop_list(body)
        payload: dict[str, Any] = {
            "model": backend.meta.get("upstream_model") or body.get("model") or backend.model,
            "stream": bool(body.get("stream")),
            "options": options,
        }
        if ctx.endpoint == "chat.completions":
            path = "/api/chat"
            payload["messages"] = [_message(m) for m in body.get("messages") or []]
            if body.get("tools") and _tool_choice(body.get("tool_choice")):
                payload["tools"] = body["tools"]
            fmt = body.get("response_format") or {}
            if fmt.get("type") == "json_object":
                payload["format"] = "json"
            elif fmt.get("type") == "json_schema":
                payload["format"] = (fmt.get("json_schema") or {}).get("schema", "json")
        else:
            path = "/api/generate"
            payload["prompt"] = common.first_prompt(body)
            payload["raw"] = True
        headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
        return PreparedRequest("POST", backend.url.rstrip("/") + path, payload, headers)

    def decode(self, backend: Backend, ctx: RequestContext, payload: Any) -> dict[str, Any]:
        data = common.loads(payload)
        if not isinstance(data, dict):
            raise UpstreamError(f"Ollama backend {backend.id} sent an unexpected body")
        if "error" in data:
            raise UpstreamError(f"Ollama backend {backend.id}: {data['error']}")
        if ctx.endpoint == "chat.completions":
            message = data.get("message") or {}
            text = str(message.get("content") or "")
            calls = _tool_calls(message.get("tool_calls"), ctx)
        else:
            text, calls = str(data.get("response") or ""), []
        return common.completion_body(
            ctx, text, _finish(data, bool(calls)), _usage(data), tool_calls=calls or None
        )

    async def stream(
        self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
    ) -> AsyncIterator[dict[str, Any]]:
        out = common.ChunkWriter(ctx)
        saw_tools = False
        async for data in common.json_lines(lines, sse=False):
            if "error" in data:
                raise UpstreamError(f"Ollama backend {backend.id}: {data['error']}")
            message = data.get("message") or {}
            text = str(message.get("content") or data.get("response") or "")
            calls = _tool_calls(message.get("tool_calls"), ctx)
            saw_tools = saw_tools or bool(calls)
            if text or calls:
                yield out.delta(text, tool_calls=calls or None)
            if data.get("done"):
                yield out.delta("", _finish(data, saw_tools))
                use = out.usage(_usage(data))
                if use is not None:
                    yield use
                return
