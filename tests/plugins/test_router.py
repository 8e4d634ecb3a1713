"""Prompt router decisions (Chinese, long and code prompts, capabilities, rules) and its inputs."""

from __future__ import annotations

from typing import Any

import pytest

from switchgear.default_plugins.router import PromptRouter
from switchgear.errors import ContextLengthExceeded
from switchgear.proxy import families as catalogue
from switchgear.proxy.text import detect_language, estimate_prompt_tokens, estimate_tokens
from switchgear.settings import parse_settings
from switchgear.settings.router import RouterSettings
from switchgear.types import ModelInfo, RequestContext

NAMES = [
    "chatglm3-6b",
    "baichuan2-13b",
    "llama3-8b",
    "llama3-70b",
    "deepseek-coder-6.7b",
    "qwen2-7b",
]


def models(*names: str) -> dict[str, ModelInfo]:
    return {n: catalogue.model_info(n) for n in names or NAMES}


def ask(text: str, **body: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **body}


def route(
    body: dict[str, Any], infos: dict[str, ModelInfo] | None = None, **router: Any
) -> tuple[str, str]:
    d = PromptRouter(RouterSettings(**router)).route(body, infos or models())
    return d.model, d.rule


def test_language_and_token_estimates() -> None:
    assert detect_language("请用三句话介绍一下长城的历史。") == "zh"
    assert detect_language("How tall is the Great Wall?") == "en"
    assert detect_language("解释这段 Python code: print('hello world')") == "zh"
    assert estimate_tokens("长城") == 2
    assert estimate_tokens("a" * 35) == 10
    assert estimate_prompt_tokens(ask("你好")) == 2 + 4


def test_chinese_prompt_goes_to_a_model_listing_zh() -> None:
    assert route(ask("请用三句话介绍一下长城的历史。")) == ("chatglm3-6b", "language:zh")
    # without full Chinese models, a partial one beats none
    infos = models("llama3-8b", "mistral-7b")
    assert route(ask("请介绍长城"), infos) == ("llama3-8b", "language:zh~")


def test_english_prompt_takes_the_cheapest() -> None:
    assert route(ask("Tell me a joke about cats.")) == ("chatglm3-6b", "cheapest")


def test_long_prompt_never_goes_to_a_model_whose_context_is_too_short() -> None:
    long_zh = "长城" * 3000  # ~6000 tokens + reserve: more than Baichuan2's 4096, less than 8192
    assert route(ask(long_zh), models("baichuan2-13b", "chatglm3-6b")) == (
        "chatglm3-6b",
        "language:zh,context:6260",
    )
    longer = "word " * 8000  # ~11,400 tokens: only the 32k/128k models
    name, rule = route(ask(longer))
    assert name == "qwen2-7b" and "context:" in rule
    with pytest.raises(ContextLengthExceeded):
        route(ask("x" * 200_000), models("chatglm3-6b", "llama3-8b"))


def test_max_tokens_counts_against_the_context() -> None:
    infos = {
        "small": ModelInfo("small", context_length=1000, cost=1),
        "big": ModelInfo("big", context_length=9000, cost=5),
    }
    assert route(ask("hi"), infos)[0] == "small"
    assert route(ask("hi", max_tokens=2000), infos)[0] == "big"


def test_code_prompt_goes_to_a_code_model() -> None:
    assert (
        route(ask("Write a Python function that reverses a linked list."))[0]
        == "deepseek-coder-6.7b"
    )
    assert route(ask("```js\nconst x = 1\n```\nwhy does this fail?"))[1] == "task:code"


def test_required_capabilities() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert route(ask("What's the weather?", tools=tools)) == ("qwen2-7b", "capability:tools")
    json_mode = ask("List three colours", response_format={"type": "json_object"})
    assert route(json_mode) == ("qwen2-7b", "capability:json")


def test_rules_from_config_win_in_order() -> None:
    rules = [
        {"name": "zh-code", "match": {"language": "zh", "task": ["code"]}, "model": "qwen2-7b"},
        {
            "name": "legal",
            "match": {"task": [r"\bcontract\b"]},
            "models": ["llama3-70b", "llama3-8b"],
        },
        {"name": "too-small", "match": {"min_tokens": 5000}, "model": "baichuan2-13b"},
    ]
    assert route(ask("用 Python 写一个快速排序函数"), rules=rules) == ("qwen2-7b", "rule:zh-code")
    assert route(ask("Review this contract clause"), rules=rules) == ("llama3-8b", "rule:legal")
    # the matching rule's model cannot hold the prompt: fall through to the built-in choice
    assert route(ask("long " * 4000), rules=rules)[0] != "baichuan2-13b"


def test_default_and_candidates() -> None:
    infos = {"a": ModelInfo("a", context_length=1000), "b": ModelInfo("b", context_length=None)}
    assert route(ask("hi"), infos, candidates=["a"]) == ("a", "cheapest")
    assert route(ask("hi " * 1000), infos, candidates=["a"], default="b") == ("b", "default")


def test_select_model_only_answers_routing_aliases_and_fills_from_catalogue() -> None:
    router = PromptRouter(parse_settings({"router": {"aliases": ["auto", "smart"]}}).router)
    bare = {
        n: ModelInfo(n) for n in ("chatglm3-6b", "llama3-8b")
    }  # as the gateway knows them from config
    ctx = RequestContext("r", "chat.completions", ask("你好"), "smart", "smart")
    decision = router.select_model(ctx, bare)
    assert decision is not None and decision.model == "chatglm3-6b"
    ctx = RequestContext("r", "chat.completions", ask("你好"), "llama3-8b", "llama3-8b")
    assert router.select_model(ctx, bare) is None
