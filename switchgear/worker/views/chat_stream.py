"""The streamed form of a chat completion: content deltas as they come, or, when the answer
is parsed for tool calls, the answer held to its end and sent as ``tool_calls`` deltas (or
as content, when it holds no call)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web

from switchgear.worker.generation import GenEvent, SamplingParams, TokenLogprob
from switchgear.worker.views.chat_tools import ToolPlan, answer, call_deltas
from switchgear.worker.views.common import events, stream_sse, usage
from switchgear.worker.views.params import chat_logprobs


class _ChatStream:
    def __init__(self, head: dict[str, Any], n: int, tp: ToolPlan, logprobs: bool) -> None:
        self.head, self.tp, self.logprobs = head, tp, logprobs
        self.held: list[list[str]] = [[] for _ in range(n)]
        self.held_lps: list[list[TokenLogprob]] = [[] for _ in range(n)]

    def chunk(
        self, i: int, delta: dict[str, Any], finish: str | None, lps: Any = ()
    ) -> dict[str, Any]:
        lp = chat_logprobs(list(lps)) if self.logprobs and lps else None
        return {
            **self.head,
            "object": "chat.completion.chunk",
            "choices": [{"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}],
        }

    def on_event(self, i: int, ev: GenEvent) -> Iterator[dict[str, Any]]:
        if not self.tp.parse:
            if ev.text or ev.finish_reason:
                delta = {"content": ev.text} if ev.text else {}
                yield self.chunk(i, delta, ev.finish_reason, ev.logprobs)
            return
        self.held[i].append(ev.text)
        self.held_lps[i].extend(ev.logprobs)
        if ev.finish_reason:
            yield from self.finished(i, ev.finish_reason)

    def finished(self, i: int, finish: str) -> Iterator[dict[str, Any]]:
        content, calls = answer("".join(self.held[i]), self.tp)
        if calls:
            for delta in call_deltas(calls):
                yield self.chunk(i, delta, None)
            finish = "tool_calls"
        elif content:
            yield self.chunk(i, {"content": content}, None, self.held_lps[i])
        yield self.chunk(i, {}, finish)


async def stream_chat(
    request: web.Request,
    head: dict[str, Any],
    ids: list[int],
    choices: list[SamplingParams],
    tp: ToolPlan,
    logprobs: bool,
    include_usage: bool,
) -> web.StreamResponse:
    state = _ChatStream(head, len(choices), tp, logprobs)

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        for i in range(len(choices)):
            yield state.chunk(i, {"role": "assistant", "content": ""}, None)
        prompt, done = len(ids), 0
        async for i, ev in events(request, ids, choices):
            for c in state.on_event(i, ev):
                yield c
            if ev.finish_reason:
                prompt, done = ev.prompt_tokens, done + ev.completion_tokens
        if include_usage:
            yield {
                **head,
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": usage(prompt, done),
            }

    return await stream_sse(request, chunks())
