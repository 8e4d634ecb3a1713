"""The tool-call parsers for the chat formats switchgear ships."""

from __future__ import annotations

import json

from switchgear.worker.tiny import build_tokenizer
from switchgear.worker.tools import call_schema, detect_format, parse_tool_calls


def args(call: object) -> object:
    return json.loads(call.arguments)  # type: ignore[attr-defined]


def test_llama3_json_calls() -> None:
    text = (
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_time", "parameters": {"tz": "CET"}}'
    )
    content, calls = parse_tool_calls(text, "llama3")
    assert content is None
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert args(calls[0]) == {"city": "Paris"} and args(calls[1]) == {"tz": "CET"}
    assert calls[0].id != calls[1].id and calls[0].id.startswith("call_")


def test_chatglm3_tool_call() -> None:
    text = "get_weather\n```python\ntool_call(city='北京', days=3, hourly=True)\n```"
    content, calls = parse_tool_calls(text, "chatglm3")
    assert content is None
    assert calls[0].name == "get_weather"
    assert args(calls[0]) == {"city": "北京", "days": 3, "hourly": True}


def test_chatglm3_never_evaluates_code() -> None:
    text = "get_weather\n```python\ntool_call(city=__import__('os').getcwd())\n```"
    content, calls = parse_tool_calls(text, "chatglm3")
    assert calls == [] and content == text


def test_generic_json_in_text_with_and_without_tags() -> None:
    text = 'Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    content, calls = parse_tool_calls(text, "json")
    assert content == "Let me check."
    assert calls[0].name == "get_weather" and args(calls[0]) == {"city": "Oslo"}
    bare = 'Sure: {"name": "f", "arguments": "{\\"x\\": 1}"} done'
    content, calls = parse_tool_calls(bare, "json")
    assert args(calls[0]) == {"x": 1} and content == "Sure:  done"


def test_text_without_calls_is_left_alone() -> None:
    for text in ["just words", '{"a": 1} is JSON but no call', "{broken"]:
        assert parse_tool_calls(text, "json") == (text, [])


def test_only_offered_tools_count() -> None:
    text = '{"name": "rm_rf", "arguments": {}}'
    assert parse_tool_calls(text, "json", {"get_weather"}) == (text, [])


def test_format_detection() -> None:
    class Tok:
        def __init__(self, template: str) -> None:
            self.chat_template = template

    assert detect_format(Tok("<|start_header_id|>{{ x }}"), "llama") == "llama3"
    assert detect_format(Tok("<|observation|>"), None) == "chatglm3"
    assert detect_format(Tok(""), "chatglm") == "chatglm3"
    assert detect_format(build_tokenizer(600), "llama") == "json"


def test_call_schema_uses_the_formats_key() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    assert "parameters" in call_schema([tool], "llama3")["properties"]
    assert "arguments" in call_schema([tool], "json")["properties"]
    assert len(call_schema([tool, tool], "json")["anyOf"]) == 2


def test_tiny_template_renders_tools_calls_and_results() -> None:
    tok = build_tokenizer(600)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    text = tok.apply_chat_template(
        messages, tools=[tool], tokenize=False, add_generation_prompt=True
    )
    assert text.count("Be brief.") == 1 and '"name": "get_weather"' in text
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>' in text
    assert "<|im_start|>tool\nsunny<|im_end|>" in text
    content, calls = parse_tool_calls(text.split("<|im_start|>assistant\n")[1], "json")
    assert calls[0].name == "get_weather" and args(calls[0]) == {"city": "Oslo"}
