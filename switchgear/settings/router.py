"""Settings of the built-in prompt router and canary/shadow plugin (owned by the plugins part).

Example::

    router:
      aliases: [auto]
      default: llama3-8b
      rules:
        - name: chinese-code
          match: {language: zh, task: [code]}
          model: deepseek-coder-6.7b
        - match: {capability: [tools]}
          models: [qwen2-7b, llama3-70b]      # the cheapest that fits wins
      catalogue:
        - {pattern: "^my-finetune", context_length: 4096, languages: [zh, en], prompt_format: chatglm3}
      canary:
        - {model: chatglm3-6b, candidate: glm4-9b, share: 0.1}
        - {model: chatglm3-6b, candidate: qwen2-7b, share: 1.0, mode: shadow}
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from switchgear.settings.base import Section

# Named task patterns: a rule's ``task`` entries may name one of these instead of a regex, and
# the router prefers models whose capabilities list the task name when the task is detected.
DEFAULT_TASKS: dict[str, list[str]] = {
    "code": [
        r"```",
        r"\b(def|class|import|return|function|const|let|var|public|static|void|#include)\b",
        r"\b(python|javascript|typescript|java|golang|rust|c\+\+|sql|bash|regex)\b",
        r"\b(code|function|script|bug|compile|refactor|stack ?trace|unit test)\b",
        r"(代码|函数|编程|程序|脚本|报错)",
    ],
}


def _check_regexes(patterns: list[str]) -> list[str]:
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {p!r}: {exc}") from None
    return patterns


class RuleMatch(Section):
    """Conditions of a rule; all that are set must hold."""

    language: str | None = None
    task: list[str] = Field(default_factory=list)  # task names (router.tasks) or regexes; any
    capability: list[str] = Field(
        default_factory=list
    )  # required by the request: tools, json, vision
    min_tokens: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)


class RouteRule(Section):
    """If ``match`` holds, route to ``model`` (or the cheapest of ``models`` that fits)."""

    name: str | None = None
    match: RuleMatch = Field(default_factory=lambda: RuleMatch.model_validate({}))
    model: str | None = None
    models: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_target(self) -> RouteRule:
        if not self.model and not self.models:
            raise ValueError("a rule needs model or models")
        return self

    def targets(self) -> list[str]:
        return ([self.model] if self.model else []) + list(self.models)


class FamilyOverride(Section):
    """A catalogue entry from config; it is consulted before the built-in families."""

    pattern: str
    context_length: int | None = Field(None, gt=0)
    languages: list[str] | None = None
    capabilities: list[str] | None = None
    cost: float | None = Field(None, ge=0)
    prompt_format: str | None = None

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        return _check_regexes([v])[0]


class CanaryRule(Section):
    """Send ``share`` of ``model``'s traffic to ``candidate`` (canary), or mirror it (shadow).

    ``candidate`` is a model name known to the gateway. The split is decided by a hash of
    the request's ``user`` field (or its id), so one user stays on one side.
    """

    model: str
    candidate: str
    share: float = Field(0.05, ge=0, le=1)
    mode: Literal["canary", "shadow"] = "canary"

    @model_validator(mode="after")
    def _distinct(self) -> CanaryRule:
        if self.model == self.candidate:
            raise ValueError("candidate must differ from model")
        return self


class RouterSettings(Section):
    aliases: list[str] = Field(default_factory=lambda: ["auto"])
    candidates: list[str] = Field(default_factory=list)  # models an alias may pick; empty = all
    rules: list[RouteRule] = Field(default_factory=list)
    tasks: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_TASKS.items()}
    )
    default: str | None = None
    completion_reserve: int = Field(
        256, ge=0
    )  # tokens kept free for the answer when max_tokens is unset
    catalogue: list[FamilyOverride] = Field(default_factory=list)
    canary: list[CanaryRule] = Field(default_factory=list)

    @field_validator("tasks")
    @classmethod
    def _task_regexes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for patterns in v.values():
            _check_regexes(patterns)
        return v
