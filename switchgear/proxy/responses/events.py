"""A stream of chat chunks framed as Responses API events, as the openai SDK parses them.

Order, as OpenAI sends it: ``response.created`` and ``response.in_progress`` with the first
chunk; for text, ``response.output_item.added`` (a ``message``), ``response.content_part.added``
and one ``response.output_text.delta`` per chunk; for each tool call,
``response.output_item.added`` (a ``function_call``) and its
``response.function_call_arguments.delta`` events. At the end every open item is closed
(``response.output_text.done``, ``response.content_part.done``,
``response.function_call_arguments.done``, ``response.output_item.done``) and
``response.completed`` (``response.incomplete`` after a ``length`` finish) carries the
whole response with its usage. Every event has the ``event:`` line of its type and a
``sequence_number``.

Events from a backend that speaks the Responses API itself pass through unchanged (a chunk
with a ``type`` and no ``choices`` is such an event); only the framing is added. An in-band
error is an ``error`` event with the error's code, message and param.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchgear.proxy.responses import answer


def frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass(slots=True)
class _Item:
    """One output item being streamed: the message, or one tool call."""

    index: int
    id: str
    call: dict[str, Any] | None = None  # the tool call's id and name, for function calls
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def final(self) -> dict[str, Any]:
        if self.call is None:
            return answer.message_item(self.id, self.text)
        return answer.call_item(self.id, self.call, self.text)


class ResponseEvents:
    """The :class:`~switchgear.proxy.frames.Frames` of one Responses stream."""

    def __init__(self, request: Mapping[str, Any], request_id: str, model: str) -> None:
        self.request, self.request_id, self.model = request, request_id, model
        self.response_id, self.message_id = answer.ids(request_id)
        self.seq = 0
        self.started = False
        self.native = False
        self.items: list[_Item] = []
        self.message: _Item | None = None
        self.calls: dict[int, _Item] = {}
        self.finish_reason: Any = None
        self.usage: dict[str, Any] | None = None
        self.created_at: int | None = None

    def _event(self, out: list[bytes], kind: str, **fields: Any) -> None:
        out.append(frame({"type": kind, "sequence_number": self.seq, **fields}))
        self.seq += 1

    def _response(self, status: str) -> dict[str, Any]:
        return answer.envelope(
            self.request, self.response_id, self.model, created_at=self.created_at, status=status
        )

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        if isinstance(chunk.get("type"), str) and "choices" not in chunk:
            self.native = True
            seq = chunk.get("sequence_number")
            self.seq = seq + 1 if isinstance(seq, int) else self.seq + 1  # an error follows on
            return frame(chunk)
        out: list[bytes] = []
        if not self.started:
            self.started = True
            self.model = str(chunk.get("model") or self.model)
            created = chunk.get("created")
            self.created_at = created if isinstance(created, int) and created else None
            self._event(out, "response.created", response=self._response("in_progress"))
            self._event(out, "response.in_progress", response=self._response("in_progress"))
        if isinstance(chunk.get("usage"), dict):
            self.usage = answer.usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(out, choice)
        return b"".join(out)

    def _choice(self, out: list[bytes], choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(text, str) and text:
            self._text(out, text)
        for call in (delta.get("tool_calls") if isinstance(delta, dict) else None) or ():
            if isinstance(call, dict):
                self._call(out, call)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _text(self, out: list[bytes], text: str) -> None:
        item = self.message
        if item is None:
            item = self.message = _Item(len(self.items), self.message_id)
            self.items.append(item)
            added = answer.message_item(item.id, "", status="in_progress")
            self._event(out, "response.output_item.added", output_index=item.index, item=added)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self._event(out, "response.content_part.added", **self._at(item), part=part)
        item.parts.append(text)
        self._event(out, "response.output_text.delta", **self._at(item), delta=text, logprobs=[])

    def _call(self, out: list[bytes], call: dict[str, Any]) -> None:
        key = call.get("index", len(self.calls))
        fn = call.get("function") or {}
        item = self.calls.get(key)
        if item is None:
            item_id = answer.call_item_id(self.request_id, len(self.calls))
            item = _Item(len(self.items), item_id, {"id": call.get("id"), "function": dict(fn)})
            self.calls[key] = item
            self.items.append(item)
            added = answer.call_item(item.id, item.call or {}, "", status="in_progress")
            self._event(out, "response.output_item.added", output_index=item.index, item=added)
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            item.parts.append(args)
            self._event(
                out,
                "response.function_call_arguments.delta",
                item_id=item.id,
                output_index=item.index,
                delta=args,
            )

    def _at(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.index, "content_index": 0}

    def done(self) -> bytes:
        if self.native:
            return b""
        out: list[bytes] = []
        if not self.started:  # an empty stream still answers with a whole response
            out.append(self.chunk({"choices": []}))
        for item in self.items:
            self._close(out, item)
        response = self._response("completed")
        response["output"] = [item.final() for item in self.items]
        response["usage"] = self.usage
        answer.finish(response, self.finish_reason)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        self._event(out, kind, response=response)
        return b"".join(out)

    def _close(self, out: list[bytes], item: _Item) -> None:
        final = item.final()
        if item.call is None:
            self._event(
                out, "response.output_text.done", **self._at(item), text=item.text, logprobs=[]
            )
            self._event(
                out, "response.content_part.done", **self._at(item), part=final["content"][0]
            )
        else:
            self._event(
                out,
                "response.function_call_arguments.done",
                item_id=item.id,
                output_index=item.index,
                name=final["name"],
                arguments=item.text,
            )
        self._event(out, "response.output_item.done", output_index=item.index, item=final)

    def error(self, error: dict[str, Any]) -> bytes:
        inner = error.get("error")
        err: dict[str, Any] = inner if isinstance(inner, dict) else {}
        out: list[bytes] = []
        self._event(
            out,
            "error",
            code=err.get("code") or err.get("type"),
            message=err.get("message"),
            param=err.get("param"),
        )
        return b"".join(out)
