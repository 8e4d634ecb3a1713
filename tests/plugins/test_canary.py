"""Canary and shadow: the split, the shadow plan the gateway runs, and what is recorded."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from switchgear.default_plugins.canary import Canary, bucket, make_plugin
from switchgear.proxy.shadow import SHADOW_KEY, ShadowPlan, ShadowResult, mirror
from switchgear.settings import parse_settings
from switchgear.settings.router import CanaryRule
from switchgear.types import RequestContext

MODELS: dict[str, Any] = {"glm": None, "qwen": None}


def ctx(user: str, model: str = "glm") -> RequestContext:
    return RequestContext(f"id-{user}", "chat.completions", {"user": user}, model, model)


def answer(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def test_bucket_is_stable_and_uniform() -> None:
    assert bucket("u1", "salt") == bucket("u1", "salt") != bucket("u1", "other")
    values = [bucket(f"u{i}", "s") for i in range(2000)]
    assert 0.45 < sum(v < 0.5 for v in values) / 2000 < 0.55


def test_share_zero_and_one_and_other_models() -> None:
    never = Canary([CanaryRule(model="glm", candidate="qwen", share=0.0)])
    always = Canary([CanaryRule(model="glm", candidate="qwen", share=1.0)])
    assert never.select_model(ctx("a"), MODELS) is None
    decision = always.select_model(ctx("a"), MODELS)
    assert decision is not None and (decision.model, decision.rule) == ("qwen", "canary:glm->qwen")
    assert always.select_model(ctx("a", model="qwen"), MODELS) is None  # not a canaried model
    assert (
        always.select_model(ctx("a"), {"glm": MODELS["glm"]}) is None
    )  # candidate unknown to the gateway


def test_shadow_leaves_a_plan_and_records_differences() -> None:
    plugin = Canary([CanaryRule(model="glm", candidate="qwen", share=1.0, mode="shadow")])
    c = ctx("a")
    assert plugin.select_model(c, MODELS) is None  # the primary still answers
    plan = c.attributes[SHADOW_KEY]
    assert isinstance(plan, ShadowPlan) and (plan.model, plan.source_model) == ("qwen", "glm")
    plan.record(
        ShadowResult(answer("Beijing is the capital."), answer("Beijing is the capital."), 0.2, 0.4)
    )
    plan.record(ShadowResult(answer("Paris"), answer("Rome, surely"), 0.2, 0.3))
    plan.record(ShadowResult(answer("x"), None, 0.2, None, error="HTTP 503"))
    s = plugin.snapshot()["shadow:glm->qwen"]
    assert (s["primary_requests"], s["candidate_requests"], s["candidate_errors"]) == (1, 3, 1)
    assert (s["compared"], s["exact_matches"]) == (2, 1)
    assert 0.5 < s["mean_similarity"] < 1 and s["candidate_latency_p50_s"] == 0.35


def test_config_validation_and_factory() -> None:
    with pytest.raises(ValidationError):
        CanaryRule.model_validate({"model": "a", "candidate": "a"})
    settings = parse_settings(
        {"router": {"canary": [{"model": "a", "candidate": "b", "share": 0.2}]}}
    )
    assert make_plugin(settings).rules[0].share == 0.2
    assert make_plugin(None).rules == []


async def test_mirror_sends_the_request_to_the_candidate_and_records_it() -> None:
    plugin = Canary([CanaryRule(model="glm", candidate="qwen", share=1.0, mode="shadow")])
    c = RequestContext(
        "r1",
        "chat.completions",
        {"model": "glm", "stream": True, "stream_options": {}},
        "glm",
        "glm",
    )
    plugin.select_model(c, MODELS)
    seen: list[RequestContext] = []

    async def complete(shadow: RequestContext) -> dict[str, Any]:
        seen.append(shadow)
        return answer("same")

    async def failing(shadow: RequestContext) -> dict[str, Any]:
        raise RuntimeError("candidate down")

    await mirror(c.attributes[SHADOW_KEY], c, answer("same"), 0.1, complete)
    await mirror(c.attributes[SHADOW_KEY], c, None, 0.1, complete)  # streamed primary
    await mirror(c.attributes[SHADOW_KEY], c, answer("same"), 0.1, failing)
    assert seen[0].model == "qwen" and seen[0].body == {"model": "qwen", "stream": False}
    assert seen[0].request_id == "r1-shadow"
    s = plugin.snapshot()["shadow:glm->qwen"]
    assert (s["candidate_requests"], s["compared"], s["exact_matches"], s["candidate_errors"]) == (
        3,
        1,
        1,
        1,
    )
