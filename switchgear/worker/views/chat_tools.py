"""``tools``, ``tool_choice`` and ``response_format`` of a chat request: what the template
gets, whether the answer is parsed for calls, and which JSON schema (if any) constrains it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchgear.errors import InvalidRequest
from switchgear.worker.structured import check_schema, schema_of
from switchgear.worker.tools import ToolCall, ToolFormat, call_schema, parse_tool_calls


@dataclass(frozen=True, slots=True)
class ToolPlan:
    tools: list[dict[str, Any]] | None  # passed to the chat template
    fmt: ToolFormat
    parse: bool  # look for calls in the answer
    parallel: bool
    constrained: bool
    schema: dict[str, Any] | None  # None with ``constrained``: any JSON

    @property
    def names(self) -> set[str]:
        return {t["function"]["name"] for t in self.tools or []}


def _check_tools(tools: list[dict[str, Any]]) -> None:
    for i, tool in enumerate(tools):
        fn = tool.get("function")
        if tool.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidRequest(
                "only tools of type 'function' are supported", param=f"tools.{i}.type"
            )
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidRequest("a function needs a name", param=f"tools.{i}.function.name")


def _forced(tools: list[dict[str, Any]], choice: Any) -> list[dict[str, Any]] | None:
    """The tools one of which must be called (None: the model may answer in text)."""
    if choice in (None, "auto", "none"):
        return None
    if choice == "required":
        return tools
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if name is None:
        raise InvalidRequest(
            "tool_choice must be 'none', 'auto', 'required' or a function", param="tool_choice"
        )
    picked = [t for t in tools if t["function"]["name"] == name]
    if not picked:
        raise InvalidRequest(f"tool_choice names an unknown tool {name!r}", param="tool_choice")
    return picked


def plan(
    tools: list[dict[str, Any]] | None,
    choice: Any,
    parallel: bool | None,
    response_format: dict[str, Any] | None,
    fmt: ToolFormat,
) -> ToolPlan:
    constrained, schema = schema_of(response_format)
    if constrained:
        check_schema(schema, "response_format")
    if not tools:
        if choice not in (None, "none"):
            raise InvalidRequest("tool_choice needs tools", param="tool_choice")
        return ToolPlan(None, fmt, False, True, constrained, schema)
    _check_tools(tools)
    forced = _forced(tools, choice)
    if forced is not None:
        if constrained:
            raise InvalidRequest(
                "response_format cannot be combined with a required tool call",
                param="response_format",
            )
        constrained, schema = True, call_schema(forced, fmt)
    return ToolPlan(tools, fmt, choice != "none", parallel is not False, constrained, schema)


def answer(text: str, p: ToolPlan) -> tuple[str | None, list[ToolCall]]:
    """The message content and the tool calls of a finished answer."""
    if not p.parse:
        return text, []
    content, calls = parse_tool_calls(text, p.fmt, p.names)
    if calls and not p.parallel:
        calls = calls[:1]
    return content, calls


def call_deltas(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """OpenAI's streamed form of ``calls``: per call, a delta with id and name (empty
    arguments), then one with the arguments."""
    out: list[dict[str, Any]] = []
    for i, c in enumerate(calls):
        first = c.openai(i)
        first["function"] = {"name": c.name, "arguments": ""}
        out.append({"tool_calls": [first]})
        out.append({"tool_calls": [{"index": i, "function": {"arguments": c.arguments}}]})
    return out
