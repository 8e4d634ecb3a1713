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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from switchgear import hookimpl
from switchgear.default_plugins.configured import Configured
from switchgear.errors import ContextLengthExceeded
from switchgear.proxy.families import fill, partial_languages
from switchgear.proxy.text import (
    detect_language,
    estimate_prompt_tokens,
    prompt_text,
    required_capabilities,
)
from switchgear.settings.router import RouterSettings
from switchgear.types import ModelInfo, RequestContext, RouteDecision


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
        return self.route(ctx.body, {name: fill(info, extra) for name, info in models.items()})

    def route(self, body: dict[str, Any], models: Mapping[str, ModelInfo]) -> RouteDecision:
        """The decision for one request body over ``models`` (metadata already complete)."""
        text = prompt_text(body)
        language = detect_language(text)
        tasks = self.detect_tasks(prompt_text(body, last_user_only=True))
        caps = required_capabilities(body)
        reserve = (
            body.get("max_completion_tokens")
            or body.get("max_tokens")
            or self.settings.completion_reserve
        )
        need = estimate_prompt_tokens(body) + int(reserve)

        def eligible(names: Iterable[str]) -> list[ModelInfo]:
            return [
                models[n]
                for n in names
                if n in models and _fits(models[n], need) and _has(models[n], caps)
            ]

        for i, rule in enumerate(self.settings.rules):
            if self._matches(rule.match, language, text, tasks, caps, need):
                pool = eligible(rule.targets())
                if pool:
                    return RouteDecision(_cheapest(pool).name, f"rule:{rule.name or i}")
        pool = eligible(self.settings.candidates or models)
        if pool:
            reasons: list[str] = []
            if language != "en":
                pool = (
                    _prefer(
                        pool, lambda m: language in m.languages, reasons, f"language:{language}"
                    )
                    if any(language in m.languages for m in pool)
                    else _prefer(
                        pool,
                        lambda m: language in partial_languages(m),
                        reasons,
                        f"language:{language}~",
                    )
                )
            for task in tasks:
                pool = _prefer(pool, lambda m, t=task: t in m.capabilities, reasons, f"task:{task}")
            if not tasks:  # keep specialists (a code model) for their task while a generalist fits
                pool = _prefer(pool, lambda m: not set(m.capabilities) & set(self.tasks), [], "")
            reasons += [f"capability:{c}" for c in caps]
            if need > min((m.context_length or need) for m in models.values()):
                reasons.append(f"context:{need}")
            return RouteDecision(_cheapest(pool).name, ",".join(reasons) or "cheapest")
        default = self.settings.default
        if default and default in models and _fits(models[default], need):
            return RouteDecision(default, "default")
        raise ContextLengthExceeded(
            f"no model can serve this request: it needs about {need} tokens"
            + (f" and {', '.join(caps)}" if caps else ""),
            param="messages",
        )

    def detect_tasks(self, text: str) -> list[str]:
        return [name for name, pats in self.tasks.items() if any(p.search(text) for p in pats)]

    def _matches(
        self,
        match: Any,
        language: str,
        text: str,
        tasks: list[str],
        caps: tuple[str, ...],
        need: int,
    ) -> bool:
        if match.language and match.language != language:
            return False
        if match.task and not any(
            t in tasks or (t not in self.tasks and re.search(t, text, re.I)) for t in match.task
        ):
            return False
        if any(c not in caps for c in match.capability):
            return False
        if match.min_tokens is not None and need < match.min_tokens:
            return False
        return match.max_tokens is None or need <= match.max_tokens


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
