"""A chat completion turned into a Responses API ``response`` object.

The output holds the assistant's text as one ``message`` item (one ``output_text`` part)
and each tool call as a ``function_call`` item whose ``call_id`` is the chat tool call's
``id``; ``usage`` renames ``prompt_tokens`` / ``completion_tokens`` to ``input_tokens`` /
``output_tokens``. A ``length`` finish is ``status: incomplete`` with
``incomplete_details.reason: max_output_tokens`` (``content_filter`` likewise), as OpenAI
reports it. Ids derive from the
gateway's request id, so they are unique per request and the same in a stream's events.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


def ids(request_id: str) -> tuple[str, str]:
    """The response's id and its message item's id."""
    return f"resp_{request_id}", f"msg_{request_id}"


def call_item_id(request_id: str, index: int) -> str:
    return f"fc_{request_id}_{index}"


def usage(chat_usage: Any) -> dict[str, Any] | None:
    """Responses usage from a chat completion's ``usage`` (None when it has none)."""
    if not isinstance(chat_usage, dict):
        return None
    inp = int(chat_usage.get("prompt_tokens") or 0)
    out = int(chat_usage.get("completion_tokens") or 0)
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": int(chat_usage.get("total_tokens") or inp + out),
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def call_item(
    item_id: str, call: Mapping[str, Any], arguments: str, status: str = "completed"
) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": str(call.get("id") or item_id),
        "name": str(fn.get("name") or ""),
        "arguments": arguments,
        "status": status,
    }


def envelope(
    request: Mapping[str, Any],
    response_id: str,
    model: str,
    *,
    created_at: int | None = None,
    status: str = "completed",
) -> dict[str, Any]:
    """A ``response`` object without output: what the request asked, echoed as OpenAI does."""
    text = request.get("text") if isinstance(request.get("text"), dict) else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else int(time.time()),
        "status": status,
        "model": model,
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": None,
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": list(request.get("tools") or []),
        "text": text or {"format": {"type": "text"}},
        "metadata": request.get("metadata") or {},
        "usage": None,
    }


#: Chat finish reasons that leave a response incomplete, and the reason OpenAI gives.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def finish(response: dict[str, Any], finish_reason: Any) -> dict[str, Any]:
    """``response`` marked complete, or incomplete when its answer was cut short."""
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    if reason is not None:
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": reason}
    else:
        response["status"] = "completed"
    return response


def as_response(
    chat: dict[str, Any], request: Mapping[str, Any], request_id: str
) -> dict[str, Any]:
    """The ``response`` object for a ``chat.completion`` body (a ``response`` stays as it is)."""
    if chat.get("object") == "response":
        return chat
    response_id, message_id = ids(request_id)
    created = chat.get("created")
    out = envelope(
        request,
        response_id,
        str(chat.get("model") or request.get("model") or ""),
        created_at=created if isinstance(created, int) else None,
    )
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    text = message.get("content")
    if isinstance(text, str) and text:
        out["output"].append(message_item(message_id, text))
    for i, call in enumerate(message.get("tool_calls") or ()):
        if isinstance(call, dict):
            args = (call.get("function") or {}).get("arguments")
            out["output"].append(call_item(call_item_id(request_id, i), call, str(args or "")))
    if not out["output"]:
        out["output"].append(message_item(message_id, ""))
    out["usage"] = usage(chat.get("usage"))
    return finish(out, choice.get("finish_reason"))
