"""What the fake upstream answers beyond plain text: tool calls, and the Responses API.

``FakeUpstream(tool_calls=[ToolCall("get_weather", '{"city": "Paris"}')])`` answers every
chat request with those tool calls (``finish_reason: tool_calls``); streamed, each call's
arguments arrive in ``pieces`` deltas after a first delta with its id and name, the way
OpenAI streams them. ``FakeUpstream(responses=True)`` also serves ``POST /v1/responses``
itself, non-streamed (a ``response`` object) and streamed (Responses events, ending with
``response.completed`` and no ``[DONE]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str
    id: str | None = None

    def call_id(self, i: int) -> str:
        return self.id or f"call_fake_{i}"


def tool_message(calls: list[ToolCall]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": c.call_id(i),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for i, c in enumerate(calls)
        ],
    }


def tool_deltas(calls: list[ToolCall], pieces: int = 3) -> Iterator[dict[str, Any]]:
    """The ``delta`` objects of a streamed tool-call answer, in OpenAI's shape."""
    for i, c in enumerate(calls):
        yield {
            "role": "assistant" if i == 0 else None,
            "content": None,
            "tool_calls": [
                {
                    "index": i,
                    "id": c.call_id(i),
                    "type": "function",
                    "function": {"name": c.name, "arguments": ""},
                }
            ],
        }
        step = max(1, -(-len(c.arguments) // pieces))
        for start in range(0, len(c.arguments), step):
            piece = c.arguments[start : start + step]
            yield {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}


def response_object(name: str, model: str, body: dict[str, Any], status: str) -> dict[str, Any]:
    text = f"native hello from {name}"
    done = status == "completed"
    return {
        "id": f"resp_fake_{name}",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_fake_{name}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        if done
        else [],
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "usage": {
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 9,
        }
        if done
        else None,
    }


def response_events(name: str, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a streamed native answer, each with its ``sequence_number``."""
    item_id, text = f"msg_fake_{name}", f"native hello from {name}"
    item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant"}
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response_object(name, model, body, "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        {"type": "response.content_part.added", **at, "part": part},
        *(
            {"type": "response.output_text.delta", **at, "delta": w, "logprobs": []}
            for w in (text[:6], text[6:])
        ),
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": {**part, "text": text}},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": response_object(name, model, body, "completed")["output"][0],
        },
        {"type": "response.completed", "response": response_object(name, model, body, "completed")},
    ]
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]
