"""A Responses API request, checked and translated into a chat-completions request.

=====================================  ===============================================
Responses                              chat completions
=====================================  ===============================================
``instructions``                       a first ``system`` message
``input`` (string)                     one ``user`` message
``input`` message items                messages (``input_text`` / ``output_text`` parts
                                       become text, ``input_image`` an ``image_url``)
``function_call`` items                an assistant message's ``tool_calls``
``function_call_output`` items         ``tool`` messages (``tool_call_id`` = ``call_id``)
``tools`` (``type: function``)         ``tools`` (``{"type": "function", "function": …}``)
``tool_choice``                        ``tool_choice`` (a named function in chat's shape)
``max_output_tokens``                  ``max_tokens``
``text.format``                        ``response_format``
``temperature`` ``top_p`` ``user``     the same fields
``parallel_tool_calls`` ``seed``
``reasoning.effort``                   ``reasoning_effort``
``reasoning`` items                    left out (a chat backend has no use for them)
=====================================  ===============================================

A stream asks for the usage chunk (``stream_options.include_usage``), which the final
``response.completed`` event reports. Fields whose meaning the gateway cannot keep on a
chat backend (``previous_response_id``, ``conversation``, ``background``, ``prompt``,
``max_tool_calls``, ``top_logprobs``, tools other than functions, input items other than
the ones above) are refused with a 400
naming them, never dropped in silence; bookkeeping fields that change no answer
(``store``, ``metadata``, ``include``, ``truncation``, ``service_tier``) are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchgear.errors import InvalidRequest
from switchgear.types import Backend, RequestContext

#: The route of the Responses API.
PATH = "/v1/responses"
_YES = frozenset({"true", "1", "yes"})
_PASSED = ("temperature", "top_p", "user", "parallel_tool_calls", "seed", "stream")
_REFUSED = (
    "previous_response_id",
    "conversation",
    "background",
    "prompt",
    "max_tool_calls",
    "top_logprobs",
)
_ROLES = frozenset({"user", "assistant", "system", "developer"})


def speaks_responses(backend: Backend) -> bool:
    """Whether ``backend`` serves ``POST {url}/responses`` itself (meta ``supports_responses``)."""
    return str(backend.meta.get("supports_responses", "")).lower() in _YES


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def validate(body: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidRequest` (naming the field) at the first field ``body`` gets wrong."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model")
    inp = body.get("input")
    if not (isinstance(inp, str) and inp) and not (isinstance(inp, list) and inp):
        raise _bad("'input' must be a non-empty string or array of input items", "input")
    for name in _REFUSED:
        if body.get(name) not in (None, False):
            raise _bad(f"'{name}' is not supported by this gateway", name)
    _options(body)


def _options(body: Mapping[str, Any]) -> None:
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise _bad("'instructions' must be a string", "instructions")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("'stream' must be a boolean", "stream")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise _bad("'max_output_tokens' must be a positive integer", "max_output_tokens")
    for name in ("temperature", "top_p"):
        if not _number(body.get(name)):
            raise _bad(f"'{name}' must be a number", name)
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise _bad("'tools' must be an array", "tools")


def to_chat(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions request for the Responses request ``body`` (checked first).

    The translated ``max_tokens`` is lowered to the gateway's cap by the chat request's own
    parsing, like a chat client's.
    """
    validate(body)
    chat: dict[str, Any] = {"model": body["model"], "messages": _messages(body)}
    for name in _PASSED:
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        chat["tools"] = [_tool(t) for t in body["tools"]]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    if chat.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    return chat


def native_body(original: Mapping[str, Any], chat: Mapping[str, Any]) -> dict[str, Any]:
    """The client's Responses body for a backend that speaks it.

    ``chat`` is the translation as it goes upstream: its ``model`` (a backend's own name
    for it, after ``rewrite_request``) and its ``max_tokens`` (lowered to the gateway's cap)
    replace the client's.
    """
    out = {**original, "model": chat.get("model", original.get("model"))}
    if isinstance(chat.get("max_tokens"), int):
        out["max_output_tokens"] = chat["max_tokens"]
    return out


def goes_native(backend: Backend, ctx: RequestContext) -> bool:
    """Whether ``ctx``'s attempt on ``backend`` sends the client's Responses body as it is.

    Only a Responses request does, to a backend that speaks the API, and never when it
    resumes a stream (a resumed stream continues in the shape it began in: chat chunks).
    """
    request = ctx.request
    return (
        request is not None
        and request.responses is not None
        and speaks_responses(backend)
        and "continuation" not in ctx.attributes
    )


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    inp = body["input"]
    if isinstance(inp, str):
        messages.append({"role": "user", "content": inp})
        return messages
    for i, item in enumerate(inp):
        if not isinstance(item, dict):
            raise _bad(f"input[{i}] must be an object", "input")
        _add_item(messages, item, i)
    if not messages:
        raise _bad("'input' holds no message", "input")
    return messages


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], i: int) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        messages.append(_message(item, i))
    elif kind == "function_call":
        _add_call(messages, item, i)
    elif kind == "function_call_output":
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(f"input[{i}].call_id must be a string", "input")
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": _output_text(item.get("output"))}
        )
    elif kind != "reasoning":  # a reasoning summary carries nothing a chat backend can take
        raise _bad(f"input[{i}]: input items of type {kind!r} are not supported", "input")


def _message(item: dict[str, Any], i: int) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise _bad(f"input[{i}].role must be one of {', '.join(sorted(_ROLES))}", "input")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _bad(f"input[{i}].content must be a string or an array", "input")
    return {"role": role, "content": [_part(p, i) for p in content]}


def _part(part: Any, i: int) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_image":
        raise _bad(
            f"input[{i}]: an input_image needs an image_url (file ids are not kept)", "input"
        )
    raise _bad(f"input[{i}]: content parts of type {kind!r} are not supported", "input")


def _add_call(messages: list[dict[str, Any]], item: dict[str, Any], i: int) -> None:
    """A function call the model made, as a tool call of the assistant message it belongs to."""
    call_id, name = item.get("call_id"), item.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise _bad(f"input[{i}]: a function_call needs call_id and name strings", "input")
    args = item.get("arguments")
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": args if isinstance(args, str) else "{}"},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and "tool_call_id" not in last:
        last.setdefault("tool_calls", []).append(call)
        return
    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(
            str(p.get("text", "")) for p in output if isinstance(p, dict) and "text" in p
        )
    raise _bad("a function_call_output needs an output string", "input")


def _tool(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise _bad(f"tools of type {kind!r} are not supported; only function tools", "tools")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("a function tool needs a name", "tools")
    fn: dict[str, Any] = {"name": name}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            fn[key] = tool[key]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        if isinstance(choice.get("name"), str):
            return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("'tool_choice' must be auto, none, required or a named function", "tool_choice")


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("'text.format' must be text, json_object or json_schema with a schema", "text")
