"""Test servers that speak backends' documented wire formats (not switchgear's own).

* TGI: ``POST /generate`` and ``POST /generate_stream`` (SSE ``data:{token, generated_text,
  details}``), validating parameters the way TGI does (422 ``{"error", "error_type"}``);
  its Messages API ``POST /v1/chat/completions`` for tool calls.
* Ollama: ``POST /api/chat`` and ``/api/generate``, NDJSON when ``stream`` is true (Ollama's
  default), one object otherwise; tool calls with object arguments.
* A completion-only OpenAI server: ``POST /v1/completions`` (JSON or SSE ending ``[DONE]``),
  no chat route.

Each records the request bodies it received under ``app[REQUESTS]``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

REQUESTS: web.AppKey[list[dict[str, Any]]] = web.AppKey("requests", list)
WORDS = ["Hello", " from", " the", " fake", " backend", "."]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    body = orjson.loads(await request.read())
    request.app[REQUESTS].append(body)
    return body


def _reply(limit: int | None, prefix: str) -> tuple[list[str], bool]:
    words = [prefix] + WORDS
    if limit is not None and limit < len(words):
        return words[:limit], True
    return words, False


# --- TGI ---------------------------------------------------------------------------------


def _tgi_invalid(body: dict[str, Any]) -> str | None:
    params = body.get("parameters") or {}
    if not isinstance(body.get("inputs"), str) or not body["inputs"]:
        return "`inputs` must be a non-empty string"
    if "temperature" in params and not params["temperature"] > 0:
        return "`temperature` must be strictly positive"
    if "top_p" in params and not 0 < params["top_p"] < 1:
        return "`top_p` must be > 0.0 and < 1.0"
    if len(params.get("stop") or []) > 4:
        return "`stop` supports up to 4 stop sequences"
    if not isinstance(params.get("max_new_tokens", 20), int):
        return "`max_new_tokens` must be an integer"
    return None


async def tgi_generate(request: web.Request) -> web.Response:
    body = await _body(request)
    if err := _tgi_invalid(body):
        return _json({"error": f"Input validation error: {err}", "error_type": "validation"}, 422)
    words, cut = _reply(body["parameters"].get("max_new_tokens", 20), "TGI:")
    details: dict[str, Any] = {
        "finish_reason": "length" if cut else "eos_token",
        "generated_tokens": len(words) + (not cut),
        "seed": None,
        "prefill": [],
        "tokens": [],
    }
    return _json({"generated_text": "".join(words), "details": details})


async def tgi_generate_stream(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    if err := _tgi_invalid(body):
        return _json({"error": f"Input validation error: {err}", "error_type": "validation"}, 422)
    words, cut = _reply(body["parameters"].get("max_new_tokens", 20), "TGI:")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    tokens = [(w, False) for w in words] + ([] if cut else [("</s>", True)])
    for i, (text, special) in enumerate(tokens, 1):
        last = i == len(tokens)
        event = {
            "index": i,
            "token": {"id": i, "text": text, "logprob": -0.1, "special": special},
            "generated_text": "".join(words) if last else None,
            "details": {
                "finish_reason": "length" if cut else "eos_token",
                "generated_tokens": len(tokens),
                "seed": None,
            }
            if last
            else None,
        }
        await resp.write(b"data:" + orjson.dumps(event) + b"\n\n")
    await resp.write_eof()
    return resp


def _tgi_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "tgi",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def tgi_messages(request: web.Request) -> web.StreamResponse:
    """TGI's Messages API, answering a call of the first tool (arguments as TGI 2.0 sent them)."""
    body = await _body(request)
    name = body["tools"][0]["function"]["name"]
    if not body.get("stream"):
        call = {"id": "0", "type": "function", "function": {"name": name, "arguments": {"x": 1}}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
        usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
        return _json(
            {"object": "chat.completion", "model": "tgi", "choices": [choice], "usage": usage}
        )
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    first = {"index": 0, "id": "0", "type": "function", "function": {"name": name, "arguments": ""}}
    await resp.write(_tgi_chunk({"role": "assistant", "tool_calls": [first]}))
    for piece in ('{"x"', ": 1}"):
        await resp.write(
            _tgi_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        )
    await resp.write(_tgi_chunk({}, "tool_calls"))
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def tgi_app() -> web.Application:
    app = web.Application()
    app[REQUESTS] = []
    app.router.add_post("/generate", tgi_generate)
    app.router.add_post("/generate_stream", tgi_generate_stream)
    app.router.add_post("/v1/chat/completions", tgi_messages)
    return app


# --- Ollama ------------------------------------------------------------------------------


def _ollama_line(model: str, **fields: Any) -> bytes:
    return (
        orjson.dumps({"model": model, "created_at": "2024-07-01T00:00:00.000000Z", **fields})
        + b"\n"
    )


async def ollama_chat(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    generate = request.path == "/api/generate"
    if not body.get("model"):
        return _json({"error": "model is required"}, 400)
    if body["model"].startswith("missing"):
        return _json({"error": f"model '{body['model']}' not found"}, 404)
    if not generate and not isinstance(body.get("messages"), list):
        return _json({"error": "messages must be a list"}, 400)
    options = body.get("options") or {}
    words, cut = _reply(options.get("num_predict"), "Ollama:")
    calls = []
    if body.get("tools"):
        fn = body["tools"][0]["function"]["name"]
        calls, words, cut = [{"function": {"name": fn, "arguments": {"city": "Paris"}}}], [], False
    final = {
        "done": True,
        "done_reason": "length" if cut else "stop",
        "total_duration": 1000,
        "prompt_eval_count": 7,
        "eval_count": len(words),
    }
    key = "response" if generate else "message"

    def piece(text: str, **extra: Any) -> Any:
        return text if generate else {"role": "assistant", "content": text, **extra}

    if body.get("stream", True) is False:
        extra = {"tool_calls": calls} if calls else {}
        return _json(
            {
                "model": body["model"],
                "created_at": "2024-07-01T00:00:00Z",
                key: piece("".join(words), **extra),
                **final,
            }
        )
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    if calls:
        await resp.write(
            _ollama_line(body["model"], **{key: piece("", tool_calls=calls)}, done=False)
        )
    for w in words:
        await resp.write(_ollama_line(body["model"], **{key: piece(w)}, done=False))
    await resp.write(_ollama_line(body["model"], **{key: piece("")}, **final))
    await resp.write_eof()
    return resp


def ollama_app() -> web.Application:
    app = web.Application()
    app[REQUESTS] = []
    app.router.add_post("/api/chat", ollama_chat)
    app.router.add_post("/api/generate", ollama_chat)
    return app


# --- completion-only OpenAI server -------------------------------------------------------


async def completions(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    if not isinstance(body.get("prompt"), str | list):
        return _json(
            {"error": {"message": "prompt is required", "type": "invalid_request_error"}}, 400
        )
    words, cut = _reply(body.get("max_tokens"), "\nCompletion:")
    base = {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model"),
    }
    use = {"prompt_tokens": 9, "completion_tokens": len(words), "total_tokens": 9 + len(words)}
    reason = "length" if cut else "stop"
    if not body.get("stream"):
        choice = {"index": 0, "text": "".join(words), "logprobs": None, "finish_reason": reason}
        return _json({**base, "choices": [choice], "usage": use})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i, w in enumerate(words):
        fin = reason if i == len(words) - 1 else None
        chunk = {
            **base,
            "choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": fin}],
        }
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(b"data: " + orjson.dumps({**base, "choices": [], "usage": use}) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def completions_app() -> web.Application:
    app = web.Application()
    app[REQUESTS] = []
    app.router.add_post("/v1/completions", completions)
    return app
