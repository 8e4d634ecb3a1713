"""Hugging Face Text Generation Inference's native API: ``POST /generate`` and ``/generate_stream``.

``backend.url`` is the server root (``http://host:8080``, no ``/v1``). Chat messages are
rendered with the model's prompt format (see :mod:`.prompt_formats`). Wire format::

    POST /generate        {"inputs": "...", "parameters": {"max_new_tokens": 64, "details": true, ...}}
    ← {"generated_text": "...", "details": {"finish_reason": "length|eos_token|stop_sequence",
                                            "generated_tokens": 12, ...}}
    POST /generate_stream (same body) ← SSE, one event per token:
    data:{"index":1,"token":{"id":…,"text":"Hi","logprob":…,"special":false},"generated_text":null,"details":null}
    …the last event has "generated_text" and "details"; an error is data:{"error":"…","error_type":"…"}

TGI reports no prompt token count without ``decoder_input_details``; usage's
``prompt_tokens`` is then the tokenizer-free estimate of :mod:`switchgear.proxy.text`.
A stop sequence TGI matched is cut from non-streamed text; in a stream it has already been
sent token by token when TGI reports it. ``response_format`` (``json_object``,
``json_schema``) becomes TGI's JSON ``grammar``. A chat request with ``tools`` goes to the
same server's Messages API instead (:mod:`.tgi_messages`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from switchgear.default_plugins.protocols import common, tgi_messages
from switchgear.default_plugins.protocols.prompt_formats import get_format, render, strip_stop
from switchgear.errors import UpstreamError
from switchgear.proxy.text import estimate_tokens
from switchgear.types import Backend, PreparedRequest, RequestContext

DEFAULT_MAX_NEW_TOKENS = 512
MAX_STOP_SEQUENCES = 4  # TGI's default --max-stop-sequences
FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}


class TGIAdapter:
    name = "tgi"

    def __init__(self, prompt_format: str = "plain") -> None:
        self.format = get_format(prompt_format)

    def _inputs(self, ctx: RequestContext, body: dict[str, Any]) -> str:
        if ctx.endpoint == "chat.completions":
            return render(self.format.name, body.get("messages"))
        return common.first_prompt(body)

    def _stops(self, ctx: RequestContext, body: dict[str, Any]) -> list[str]:
        stops = common.stop_list(body)
        if ctx.endpoint == "chat.completions":
            stops += [s for s in self.format.stop if s not in stops]
        return stops[:MAX_STOP_SEQUENCES]

    def prepare(
        self, backend: Backend, ctx: RequestContext, body: dict[str, Any]
    ) -> PreparedRequest:
        common.require_generation(ctx, "TGI")
        if tgi_messages.wants_tools(ctx, body):
            return tgi_messages.prepare(backend, body)
        inputs = self._inputs(ctx, body)
        params: dict[str, Any] = {
            "max_new_tokens": common.max_tokens(body) or DEFAULT_MAX_NEW_TOKENS,
            "details": True,
            "return_full_text": False,
        }
        temperature = body.get("temperature")
        if temperature is not None and float(temperature) > 0:
            params["temperature"] = float(temperature)
            params["do_sample"] = True
        elif temperature is not None:
            params["do_sample"] = False
        top_p = body.get("top_p")
        if top_p is not None and 0 < float(top_p) < 1:
            params["top_p"] = float(top_p)
        if body.get("seed") is not None:
            params["seed"] = int(body["seed"])
        stops = self._stops(ctx, body)
        if stops:
            params["stop"] = stops
        grammar = _grammar(body.get("response_format"))
        if grammar is not None:
            params["grammar"] = grammar
        ctx.attributes["tgi.prompt_tokens"] = estimate_tokens(inputs)
        ctx.attributes["tgi.stops"] = stops
        path = "/generate_stream" if body.get("stream") else "/generate"
        headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
        return PreparedRequest(
            "POST",
            backend.url.rstrip("/") + path,
            {"inputs": inputs, "parameters": params},
            headers,
        )

    def decode(self, backend: Backend, ctx: RequestContext, payload: Any) -> dict[str, Any]:
        if tgi_messages.wants_tools(ctx, ctx.body):
            return tgi_messages.decode(backend, ctx, payload)
        data = common.loads(payload)
        if isinstance(data, list) and data:
            data = data[0]
        if not isinstance(data, dict) or "generated_text" not in data:
            raise UpstreamError(f"TGI backend {backend.id} sent no generated_text")
        details = data.get("details") or {}
        reason = FINISH.get(details.get("finish_reason", "eos_token"), "stop")
        text = str(data["generated_text"])
        if details.get("finish_reason") == "stop_sequence":
            text = strip_stop(text, ctx.attributes.get("tgi.stops", self.format.stop))
        completion = int(details.get("generated_tokens") or estimate_tokens(text))
        prompt = int(ctx.attributes.get("tgi.prompt_tokens", 0))
        return common.completion_body(ctx, text, reason, common.usage(prompt, completion))

    def stream(
        self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
    ) -> AsyncIterator[dict[str, Any]]:
        if tgi_messages.wants_tools(ctx, ctx.body):
            return tgi_messages.stream(backend, ctx, lines)
        return self._generated(backend, ctx, lines)

    async def _generated(
        self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
    ) -> AsyncIterator[dict[str, Any]]:
        out = common.ChunkWriter(ctx)
        count = 0
        async for event in common.json_lines(lines, sse=True):
            if "error" in event:
                raise UpstreamError(f"TGI backend {backend.id}: {event.get('error')}")
            token = event.get("token") or {}
            count += 1
            text = "" if token.get("special") else str(token.get("text") or "")
            details = event.get("details")
            if event.get("generated_text") is None and details is None:
                if text:
                    yield out.delta(text)
                continue
            if text:
                yield out.delta(text)
            details = details or {}
            yield out.delta("", FINISH.get(details.get("finish_reason", "eos_token"), "stop"))
            prompt = int(ctx.attributes.get("tgi.prompt_tokens", 0))
            use = out.usage(common.usage(prompt, int(details.get("generated_tokens") or count)))
            if use is not None:
                yield use
            return


def _grammar(fmt: Any) -> dict[str, Any] | None:
    """TGI's JSON grammar for an OpenAI ``response_format`` (None for plain text)."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json", "value": {"type": "object"}}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return {"type": "json", "value": schema if isinstance(schema, dict) else {"type": "object"}}
    return None
