"""Chat on completion-only OpenAI-compatible backends (``POST {url}/completions``).

Some servers load a base model without a chat template, or only offer ``/v1/completions``
(the ChatGLM3 and Baichuan2 reference servers, vLLM with a raw checkpoint). For them a chat
request is rendered with the model's prompt format into a completion request; the answer is
turned back into ``chat.completion`` (or ``chat.completion.chunk`` objects when streaming).
Completion and embedding requests pass through unchanged. ``backend.url`` ends with ``/v1``.
A chat request that offers ``tools`` or asks for JSON output (``response_format``
``json_object`` / ``json_schema``) is refused with a 400 naming the field: a rendered prompt
has no place for them, and dropping them would answer as if they had not been asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from switchgear.default_plugins.protocols import common
from switchgear.default_plugins.protocols.prompt_formats import get_format, render, strip_stop
from switchgear.errors import InvalidRequest, UpstreamError
from switchgear.types import Backend, PreparedRequest, RequestContext

# Chat-only fields a completion endpoint rejects.
CHAT_ONLY = (
    "messages",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "parallel_tool_calls",
    "max_completion_tokens",
    "modalities",
    "audio",
)
PATHS = {
    "chat.completions": "/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


def _refuse_unrenderable(backend: Backend, fmt: str, body: dict[str, Any]) -> None:
    """A 400 for what a rendered prompt cannot carry: tools, and JSON output constraints."""
    if body.get("tools"):
        raise InvalidRequest(
            f"tools are not supported by backend {backend.id}: it completes rendered "
            f"{fmt} prompts, which carry no tool definitions",
            param="tools",
        )
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        raise InvalidRequest(
            f"response_format {rf['type']} is not supported by backend {backend.id}: "
            f"it completes rendered {fmt} prompts without constrained decoding",
            param="response_format",
        )


class PromptFormatAdapter:
    def __init__(self, prompt_format: str) -> None:
        self.format = get_format(prompt_format)
        self.name = f"completions+{prompt_format}"

    def prepare(
        self, backend: Backend, ctx: RequestContext, body: dict[str, Any]
    ) -> PreparedRequest:
        payload = dict(body)
        if ctx.endpoint == "chat.completions":
            _refuse_unrenderable(backend, self.format.name, body)
        if ctx.endpoint == "chat.completions":
            payload["prompt"] = render(self.format.name, body.get("messages"))
            stops = common.stop_list(body)
            payload["stop"] = stops + [s for s in self.format.stop if s not in stops]
            if common.max_tokens(body):
                payload["max_tokens"] = common.max_tokens(body)
            for key in CHAT_ONLY:
                payload.pop(key, None)
        headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
        return PreparedRequest(
            "POST", backend.url.rstrip("/") + PATHS[ctx.endpoint], payload, headers
        )

    def decode(self, backend: Backend, ctx: RequestContext, payload: Any) -> dict[str, Any]:
        data = common.loads(payload)
        if not isinstance(data, dict):
            raise UpstreamError(f"backend {backend.id} sent an unexpected body")
        if ctx.endpoint != "chat.completions":
            return data
        choices = data.get("choices") or []
        if not choices:
            raise UpstreamError(f"backend {backend.id} sent no choices")
        use = data.get("usage") or common.usage(0, 0)
        text = strip_stop(str(choices[0].get("text") or ""), self.format.stop).strip()
        body = common.completion_body(ctx, text, choices[0].get("finish_reason") or "stop", use)
        body["choices"] = [
            {
                "index": c.get("index", i),
                "logprobs": None,
                "finish_reason": c.get("finish_reason") or "stop",
                "message": {
                    "role": "assistant",
                    "content": strip_stop(str(c.get("text") or ""), self.format.stop).strip(),
                },
            }
            for i, c in enumerate(choices)
        ]
        return body

    async def stream(
        self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
    ) -> AsyncIterator[dict[str, Any]]:
        if ctx.endpoint != "chat.completions":
            async for data in common.json_lines(lines, sse=True):
                yield data
            return
        out = common.ChunkWriter(ctx)
        leading = True
        async for data in common.json_lines(lines, sse=True):
            if "error" in data:
                raise UpstreamError(f"backend {backend.id}: {data['error']}")
            if data.get("usage") and not data.get("choices"):
                use = out.usage(data["usage"])
                if use is not None:
                    yield use
                continue
            for choice in data.get("choices") or []:
                text = str(choice.get("text") or "")
                if leading:  # chat templates open the turn with a newline the model echoes
                    text = text.lstrip()
                    leading = not text
                if text or choice.get("finish_reason"):
                    yield out.delta(text, choice.get("finish_reason"))
