"""Mid-stream recovery: finish a cut chat stream on another backend, in the same stream.

When a streamed chat answer fails after text reached the client (the backend died, reset
the connection, stalled past ``idle`` or reported an error), the gateway asks the next
backend of the same model, or the next model of the fallback chain, to *continue* it: the
request is sent again with the text so far as a final assistant message and
``"continue_final_message": true, "add_generation_prompt": false`` (vLLM's and the
switchgear worker's fields). Only backends known to accept it receive such a request: those
of models configured with ``supports_continuation``, and backends that advertise it
(switchgear workers, through ``supports_continuation`` in their Consul meta or static
``meta``; ``protocol: vllm`` backends). A backend that would start a new turn never does. When nothing but the
opening role chunk was sent, the original request is simply sent again (any model of the
chain may answer it).

The client sees one answer: every chunk carries the id, ``created`` and ``model`` of the
first chunk, the continuation's opening role delta is dropped, and the final usage chunk
counts the text sent before the cut as completion tokens (its total is the continuation's
total). Where no continuation is possible the client gets the in-band error and no
``[DONE]``, as before. Streams with several choices, tool calls or a finish reason already
sent are never continued; a stream cut after every choice's finish reason is complete, and
the relay finishes it with ``[DONE]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from switchgear import telemetry
from switchgear.errors import APIError
from switchgear.proxy.answers import StreamAnswer
from switchgear.proxy.request import describe
from switchgear.proxy.upstream import Upstream
from switchgear.types import Backend, ParsedRequest, RequestContext, Usage

log = logging.getLogger("switchgear.proxy.resume")

MAX_RESUMES = 3  # continuations of one stream before the in-band error is final
_YES = frozenset({"true", "1", "yes"})
#: Protocols whose servers accept ``continue_final_message`` by definition.
CONTINUING_PROTOCOLS = frozenset({"vllm"})


def advertises_continuation(backend: Backend) -> bool:
    """Whether ``backend`` says it continues a final assistant message."""
    if backend.protocol in CONTINUING_PROTOCOLS:
        return True
    return str(backend.meta.get("supports_continuation", "")).lower() in _YES


@dataclass(slots=True)
class Transcript:
    """What the client has received of one streamed chat answer."""

    id: str | None = None
    created: Any = None
    model: str | None = None
    parts: list[str] = field(default_factory=list)
    tokens: int = 0  # content chunks relayed (one token each for OpenAI-style servers)
    resumable: bool = True
    resumes: int = 0
    tokens_at_resume: int = 0
    excluded: set[str] = field(default_factory=set)
    total_tokens: int | None = None  # usage.total_tokens of the final usage chunk
    usage: Usage | None = None  # prompt and completion tokens of the final usage chunk
    finished: set[int] = field(default_factory=set)  # choices whose finish_reason was sent

    def complete(self, n: int | None) -> bool:
        """Whether every one of the ``n`` choices received its finish reason."""
        return len(self.finished) >= (n or 1)

    def final_usage(self, request: ParsedRequest | None) -> Usage:
        """The final usage chunk's tokens; without one, the gateway's prompt estimate and
        the content chunks relayed."""
        if self.usage is not None:
            return self.usage
        return Usage(request.prompt_tokens if request is not None else 0, self.tokens)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def record(self, chunk: dict[str, Any]) -> None:
        """Note a chunk just written to the client (after :meth:`adopt`)."""
        if self.id is None:
            self.id, self.created = chunk.get("id"), chunk.get("created")
            self.model = chunk.get("model")
        usage = chunk.get("usage")
        if usage is not None and isinstance(usage, dict):
            if isinstance(usage.get("total_tokens"), int):
                self.total_tokens = usage["total_tokens"]
            self.usage = Usage.of(usage) or self.usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            if "type" in chunk:  # a backend's own Responses event: only it can go on
                self.resumable = False
                self._response_usage(chunk.get("response"))
            return
        for choice in choices:
            self._choice(choice)

    def record_all(self, chunks: list[dict[str, Any]]) -> int:
        """:meth:`record` each of ``chunks`` (decoded JSON); returns how many have choices.

        A chunk of one plain content delta of choice 0 (the most common) is noted here, in
        fewer steps than :meth:`record` takes for it, with the same result.
        """
        with_choices = 0
        parts = self.parts
        for chunk in chunks:
            choices = chunk.get("choices")
            if choices:
                with_choices += 1
                if self.id is not None and type(choices) is list and len(choices) == 1:
                    choice = choices[0]
                    if (
                        type(choice) is dict
                        and not choice.get("finish_reason")
                        and choice.get("index", 0) == 0
                        and chunk.get("usage") is None
                    ):
                        delta = choice.get("delta")
                        if type(delta) is dict and not (
                            "tool_calls" in delta or "function_call" in delta
                        ):
                            content = delta.get("content")
                            if content and isinstance(content, str):
                                parts.append(content)
                                self.tokens += 1
                            continue
            self.record(chunk)
        return with_choices

    def _response_usage(self, response: Any) -> None:
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
            self.total_tokens = usage["total_tokens"]
        self.usage = Usage.of(usage) or self.usage

    def _choice(self, choice: Any) -> None:
        if not isinstance(choice, dict):
            self.resumable = False
            return
        index = choice.get("index", 0)
        if choice.get("finish_reason"):
            self.finished.add(index)
            self.resumable = False  # the answer is complete; only [DONE] was missing
        if index != 0:
            self.resumable = False
            return
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if self.resumable and (delta.get("tool_calls") or delta.get("function_call")):
                self.resumable = False
            content = delta.get("content")
            if content and isinstance(content, str):
                self.parts.append(content)
                self.tokens += 1

    def adopt(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """A continuation's chunk made to look like the rest of the first stream."""
        if self.resumes == 0 or self.id is None:
            return chunk
        chunk["id"], chunk["created"] = self.id, self.created
        if self.model is not None:
            chunk["model"] = self.model
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and "role" in delta:
                del delta["role"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            before = self.tokens_at_resume
            if isinstance(usage.get("completion_tokens"), int):
                usage["completion_tokens"] += before
            if isinstance(usage.get("prompt_tokens"), int):
                usage["prompt_tokens"] = max(0, usage["prompt_tokens"] - before)
        return chunk


def continuation_body(request: ParsedRequest, text: str, tokens: int) -> dict[str, Any]:
    """The client's request, asking to continue ``text`` (already ``tokens`` long)."""
    out = dict(request.body)
    out["messages"] = [*request.messages, {"role": "assistant", "content": text}]
    out["continue_final_message"] = True
    out["add_generation_prompt"] = False
    for name in ("max_tokens", "max_completion_tokens"):
        if isinstance(out.get(name), int):
            out[name] = max(1, out[name] - tokens)
    return out


def _continuing(upstream: Upstream, chain: list[str]) -> tuple[list[str], set[str]]:
    """The models of ``chain`` that may continue a stream, and backends of theirs that may not.

    A model configured with ``supports_continuation`` continues on every backend; any other
    model only on the backends that advertise it.
    """
    models: list[str] = []
    others: set[str] = set()
    for model in chain:
        if upstream.policies.get(model).supports_continuation:
            models.append(model)
            continue
        backends = upstream.registry.backends(model)
        if any(advertises_continuation(b) for b in backends):
            models.append(model)
            others |= {b.id for b in backends if not advertises_continuation(b)}
    return models, others


def _resumable(request: ParsedRequest, transcript: Transcript) -> bool:
    return (
        request.endpoint == "chat.completions"
        and transcript.resumable
        and transcript.resumes < MAX_RESUMES
        and request.n in (None, 1)
    )


async def resume(
    upstream: Upstream, ctx: RequestContext, transcript: Transcript, failed: StreamAnswer
) -> StreamAnswer | None:
    """A stream that continues ``transcript`` elsewhere, or None when none can.

    ``ctx`` is the request's context: its parsed request is what the client sent, whatever
    the continuations before sent upstream.
    """
    transcript.excluded.add(failed.backend.id)
    request = ctx.request or describe(ctx.body, ctx.endpoint)
    if not _resumable(request, transcript):
        return None
    chain = upstream.policies.chain(failed.model)
    text = transcript.text
    exclude = set(transcript.excluded)
    if text:
        models, others = _continuing(upstream, chain)
        exclude |= others
        body = continuation_body(request, text, transcript.tokens)
    else:
        models, body = chain, request.body
    if not models:
        return None
    rctx = replace(
        ctx,
        body=body,
        model=models[0],
        stream=True,
        attributes={**ctx.attributes, "continuation": bool(text)},
    )
    try:
        answer = await upstream.run(rctx, models=models, exclude=frozenset(exclude))
    except APIError as exc:
        log.info("request %s: no backend could continue the stream: %s", ctx.request_id, exc)
        return None
    if not isinstance(answer, StreamAnswer):  # pragma: no cover - stream=True gives streams
        return None
    transcript.resumes += 1
    transcript.tokens_at_resume = transcript.tokens
    telemetry.event(
        "switchgear.continuation",
        {
            "from": failed.backend.id,
            "to": answer.backend.id,
            "gen_ai.request.model": answer.model,
            "switchgear.chunks_before": transcript.tokens,
            "switchgear.continued": bool(text),
        },
    )
    log.info(
        "request %s: stream from %s resumed on %s (%s) after %d chunks",
        ctx.request_id,
        failed.backend.id,
        answer.backend.id,
        answer.model,
        transcript.tokens,
    )
    return answer
