"""Tool calls in a model's answer, for the chat formats switchgear ships.

- ``llama3``: Llama 3.x JSON calls, ``{"name": ..., "parameters": {...}}`` (optionally after
  ``<|python_tag|>``, several separated by ``;``).
- ``chatglm3``: ChatGLM3's ``name\\n```python\\ntool_call(arg=value, ...)\\n```` turns.
- ``json``: the generic fallback, JSON objects with ``name`` and ``arguments`` (or
  ``parameters``) anywhere in the text, inside ``<tool_call>`` tags or not. The tiny model's
  template asks for this form.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

ToolFormat = Literal["llama3", "chatglm3", "json"]

_GLM_TURN = re.compile(r"^\s*([\w.-]+)\s*\n\s*```(?:python)?\s*\n(.*?)\n?\s*```", re.S)


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # a JSON object, as OpenAI sends it
    id: str = ""

    def openai(self, index: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        if index is not None:
            out["index"] = index
        return out


def detect_format(tokenizer: Any, model_type: str | None) -> ToolFormat:
    template = str(getattr(tokenizer, "chat_template", "") or "")
    if (model_type or "").startswith("chatglm") or "<|observation|>" in template:
        return "chatglm3"
    if "<|start_header_id|>" in template or "<|python_tag|>" in template:
        return "llama3"
    return "json"


def parse_tool_calls(
    text: str, fmt: ToolFormat, names: set[str] | None = None
) -> tuple[str | None, list[ToolCall]]:
    """``(content, calls)``: the calls found in ``text`` (only of tools in ``names`` when
    given) and the text left around them (None when nothing is left)."""
    calls: list[ToolCall] = []
    if fmt == "chatglm3":
        content, calls = _chatglm3(text)
    if not calls:
        content, calls = _json_calls(text.replace("<|python_tag|>", ""))
    if names is not None:
        calls = [c for c in calls if c.name in names]
    if not calls:
        return text, []
    return (content.strip() or None), calls


def _new_call(name: str, args: Any) -> ToolCall:
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall(name, arguments, f"call_{uuid.uuid4().hex[:24]}")


def _json_calls(text: str) -> tuple[str, list[ToolCall]]:
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    rest: list[str] = []
    pos = 0
    while pos < len(text):
        start = text.find("{", pos)
        if start < 0:
            rest.append(text[pos:])
            break
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            rest.append(text[pos : start + 1])
            pos = start + 1
            continue
        call = _as_call(obj)
        rest.append(text[pos:start] if call else text[pos:end])
        if call:
            calls.append(call)
        pos = end
    leftover = "".join(rest)
    if calls:
        leftover = re.sub(r"</?tool_call>|;", "", leftover)
    return leftover, calls


def _as_call(obj: Any) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {...}}
        return _as_call(obj["function"])
    args = obj.get("arguments", obj.get("parameters"))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return _new_call(obj["name"], args)


def _chatglm3(text: str) -> tuple[str, list[ToolCall]]:
    calls: list[ToolCall] = []
    rest: list[str] = []
    for turn in re.split(r"<\|assistant\|>", text):
        match = _GLM_TURN.match(turn)
        args = _glm_arguments(match.group(2)) if match else None
        if match is None or args is None:
            rest.append(turn)
            continue
        calls.append(_new_call(match.group(1), args))
        rest.append(turn[match.end() :])
    return "".join(rest), calls


def _glm_arguments(code: str) -> dict[str, Any] | None:
    """The keyword arguments of ``tool_call(...)`` (literals only; nothing is evaluated)."""
    try:
        node = ast.parse(code.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    if node.func.id != "tool_call" or node.args:
        return None
    try:
        return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except ValueError:
        return None


def call_schema(tools: list[dict[str, Any]], fmt: ToolFormat) -> dict[str, Any]:
    """A JSON schema that only a call of one of ``tools`` matches (for ``tool_choice``
    ``required`` or a named function), in the JSON form the format's parser reads."""
    key = "parameters" if fmt == "llama3" else "arguments"
    options = []
    for tool in tools:
        fn = tool.get("function", {})
        params = fn.get("parameters") or {"type": "object"}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": [fn["name"]]}, key: params},
                "required": ["name", key],
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def template_takes_tools(tokenizer: Any) -> bool:
    """Whether the chat template renders a tool list (the prompt differs with one)."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    probe = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": "probe", "parameters": {"type": "object"}}}
    try:
        with_tools = tokenizer.apply_chat_template(probe, tools=[tool], tokenize=False)
        without = tokenizer.apply_chat_template(probe, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that fails on tools cannot take them
        return False
    return bool(with_tools != without)
