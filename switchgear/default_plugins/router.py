"""The prompt router: picks a concrete model when a client asks for a routing alias.

Order of decision (the first that yields a model wins):

1. ``router.rules`` in config, in order. A rule matches when every condition it sets holds
   (language, any task, every capability, token range); its target is the cheapest of its
   ``model``/``models`` that can hold the prompt and has the capabilities the request needs.
   A matching rule with no such target falls through to the next.
2. Built-in preferences over ``router.candidates`` (or every known model): keep the models
   whose context holds the prompt plus the answer and that have the needed capabilities;
   then prefer the prompt's language (full support, else partial), then models whose
   capabilities name a detected task (``code``) — or, when no task is detected, models
   that are not such specialists — then the cheapest.
3. ``router.default``, when it can hold the prompt.

Nothing fits → ``context_length_exceeded`` (400). The decision's ``rule`` names what chose
the model (``rule:<name>``, ``language:zh``, ``task:code``, ``capability:tools``, ``cheapest``,
``default``); the gateway puts it in ``x-switchgear-route`` and the metrics.

Everything it reads about the prompt (text, needed capabilities, the token estimate the rate
limiter shares) comes from the request parsed at the gateway's edge, ``ctx.request``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from switchgear import hookimpl
from switchgear.default_plugins.configured import Configured
from switchgear.errors import ContextLengthExceeded
from switchgear.proxy.families import fill, partial_languages
from switchgear.proxy.request import describe
from switchgear.proxy.text import detect_language
from switchgear.settings.router import RouterSettings
from switchgear.types import ModelInfo, ParsedRequest, RequestContext, RouteDecision


class PromptRouter(Configured):
    """The ``select_model`` implementation, bound to one app's router settings."""

    def __init__(self, settings: RouterSettings | None = None) -> None:
        self.use(settings or RouterSettings.model_validate({}))

    def configure(self, settings: Any) -> None:
        self.use(getattr(settings, "router", None) or RouterSettings.model_validate({}))

    def use(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.tasks = {
            name: [re.compile(p, re.IGNORECASE) for p in pats]
            for name, pats in settings.tasks.items()
        }

    @hookimpl(trylast=True)
    def select_model(
        self, ctx: RequestContext, models: Mapping[str, ModelInfo]
    ) -> RouteDecision | None:
        if ctx.requested_model not in self.settings.aliases:
            return None
        extra = self.settings.catalogue
        request = ctx.request or describe(ctx.body, ctx.endpoint)
        return self.decide(request, {name: fill(info, extra) for name, info in models.items()})

    def route(self, body: dict[str, Any], models: Mapping[str, ModelInfo]) -> RouteDecision:
        """The decision for one chat request body over ``models`` (metadata already complete)."""
        return self.decide(describe(body, "chat.completions"), models)

    def decide(self, request: ParsedRequest, models: Mapping[str, ModelInfo]) -> RouteDecision:
        """The decision for one parsed request over ``models`` (metadata already complete)."""
        reserve = request.max_tokens or self.settings.completion_reserve
        prompt = _Prompt(
            text=request.text,
            language=detect_language(request.text),
            tasks=self.detect_tasks(request.last_user_text),
            caps=request.capabilities,
            need=request.prompt_tokens + int(reserve),
        )
        decision = (
            self._by_rules(prompt, models)
            or self._by_preference(prompt, models)
            or self._by_default(prompt, models)
        )
        if decision is not None:
            return decision
        raise ContextLengthExceeded(
            f"no model can serve this request: it needs about {prompt.need} tokens"
            + (f" and {', '.join(prompt.caps)}" if prompt.caps else ""),
            param="messages",
        )

    def _by_rules(self, prompt: _Prompt, models: Mapping[str, ModelInfo]) -> RouteDecision | None:
        for i, rule in enumerate(self.settings.rules):
            if self._matches(rule.match, prompt):
                pool = _eligible(rule.targets(), models, prompt)
                if pool:
                    return RouteDecision(_cheapest(pool).name, f"rule:{rule.name or i}")
        return None

    def _by_preference(
        self, prompt: _Prompt, models: Mapping[str, ModelInfo]
    ) -> RouteDecision | None:
        pool = _eligible(self.settings.candidates or models, models, prompt)
        if not pool:
            return None
        reasons: list[str] = []
        pool = _prefer_language(pool, prompt.language, reasons)
        for task in prompt.tasks:
            pool = _prefer(pool, lambda m, t=task: t in m.capabilities, reasons, f"task:{task}")
        if not prompt.tasks:
            # keep specialists (a code model) for their task while a generalist fits
            pool = _prefer(pool, lambda m: not set(m.capabilities) & set(self.tasks), [], "")
        reasons += [f"capability:{c}" for c in prompt.caps]
        if prompt.need > min((m.context_length or prompt.need) for m in models.values()):
            reasons.append(f"context:{prompt.need}")
        return RouteDecision(_cheapest(pool).name, ",".join(reasons) or "cheapest")

    def _by_default(self, prompt: _Prompt, models: Mapping[str, ModelInfo]) -> RouteDecision | None:
        default = self.settings.default
        if default and default in models and _fits(models[default], prompt.need):
            return RouteDecision(default, "default")
        return None

    def detect_tasks(self, text: str) -> list[str]:
        return [name for name, pats in self.tasks.items() if any(p.search(text) for p in pats)]

    def _matches(self, match: Any, prompt: _Prompt) -> bool:
        if match.language and match.language != prompt.language:
            return False
        if match.task and not any(
            t in prompt.tasks or (t not in self.tasks and re.search(t, prompt.text, re.I))
            for t in match.task
        ):
            return False
        if any(c not in prompt.caps for c in match.capability):
            return False
        if match.min_tokens is not None and prompt.need < match.min_tokens:
            return False
        return match.max_tokens is None or prompt.need <= match.max_tokens


@dataclass(frozen=True, slots=True)
class _Prompt:
    """What the rules and preferences look at: one request, read once."""

    text: str
    language: str
    tasks: list[str]
    caps: tuple[str, ...]
    need: int  # estimated prompt tokens plus the completion cap (or the reserve)


def _eligible(
    names: Iterable[str], models: Mapping[str, ModelInfo], prompt: _Prompt
) -> list[ModelInfo]:
    """The named models that can hold the prompt and have the capabilities it needs."""
    return [
        models[n]
        for n in names
        if n in models and _fits(models[n], prompt.need) and _has(models[n], prompt.caps)
    ]


def _prefer_language(pool: list[ModelInfo], language: str, reasons: list[str]) -> list[ModelInfo]:
    """Models with full support of a non-English prompt's language, else partial support."""
    if language == "en":
        return pool
    if any(language in m.languages for m in pool):
        return _prefer(pool, lambda m: language in m.languages, reasons, f"language:{language}")
    return _prefer(
        pool, lambda m: language in partial_languages(m), reasons, f"language:{language}~"
    )


def _fits(info: ModelInfo, need: int) -> bool:
    """Unknown context lengths are trusted; known ones must hold the prompt and the answer."""
    return info.context_length is None or info.context_length >= need


def _has(info: ModelInfo, caps: tuple[str, ...]) -> bool:
    return all(c in info.capabilities for c in caps)


def _prefer(pool: list[ModelInfo], pred: Any, reasons: list[str], reason: str) -> list[ModelInfo]:
    chosen = [m for m in pool if pred(m)]
    if chosen:
        reasons.append(reason)
        return chosen
    return pool


def _cheapest(pool: list[ModelInfo]) -> ModelInfo:
    return min(pool, key=lambda m: (m.cost, m.context_length or 0, m.name))


def make_plugin(settings: Any) -> PromptRouter:
    router = PromptRouter()
    router.bind(settings)
    return router
