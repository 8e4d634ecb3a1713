"""Shadow traffic: after the client has its answer, the same request goes to a candidate model.

A plugin (the built-in canary, :mod:`switchgear.default_plugins.canary`) decides which
requests to mirror and leaves a :class:`ShadowPlan` in ``ctx.attributes[SHADOW_KEY]``;
:func:`start_shadow` runs :func:`mirror` in a background task: the client's parsed request,
for the plan's model, through the gateway's normal upstream path (backends, adapters,
retries), never streamed. The candidate's answer is recorded by the plugin, never returned.

Resource rules: tasks live in ``app[SHADOW_TASKS]``; at most :data:`MAX_IN_FLIGHT` run at
once (more are dropped with a warning: shadow traffic must not pile up behind a slow
candidate); on cleanup they are cancelled and awaited, before the upstream session closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from switchgear.errors import UpstreamError
from switchgear.proxy import keys
from switchgear.proxy.answers import StreamAnswer
from switchgear.proxy.request import describe
from switchgear.types import ModelResolution, RequestContext

log = logging.getLogger("switchgear.proxy.shadow")

SHADOW_KEY = "switchgear.shadow"


@dataclass(frozen=True, slots=True)
class ShadowResult:
    """The primary's and the candidate's answers to one mirrored request (OpenAI bodies)."""

    primary: Mapping[str, Any] | None
    candidate: Mapping[str, Any] | None
    primary_latency_s: float | None
    candidate_latency_s: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ShadowPlan:
    model: str
    source_model: str
    record: Callable[[ShadowResult], None]


async def mirror(
    plan: ShadowPlan,
    ctx: RequestContext,
    primary: Mapping[str, Any] | None,
    primary_latency_s: float | None,
    complete: Callable[[RequestContext], Awaitable[Mapping[str, Any]]],
) -> None:
    """Run the shadow request and record it: what the gateway calls for a :class:`ShadowPlan`.

    ``complete(ctx)`` answers a non-streamed request through the gateway's normal path
    (backends, adapters, retries) and returns the OpenAI body; ``primary`` is the body the
    client received (None when it was streamed). Failures are recorded, never raised.
    """
    request = ctx.request or describe(ctx.body, ctx.endpoint)
    body = {**request.body, "model": plan.model, "stream": False}
    body.pop("stream_options", None)
    rule = f"shadow:{plan.source_model}->{plan.model}"
    shadow = RequestContext(
        request_id=f"{ctx.request_id}-shadow",
        endpoint=ctx.endpoint,
        body=body,
        requested_model=plan.model,
        model=plan.model,
        api_key_id=ctx.api_key_id,
        route_rule=rule,
        request=replace(request, model=plan.model, body=body, stream=False),
        resolution=ModelResolution(plan.model, plan.model, rule),
    )
    started = time.monotonic()
    try:
        answer = await complete(shadow)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        plan.record(
            ShadowResult(
                primary, None, primary_latency_s, None, error=f"{type(exc).__name__}: {exc}"
            )
        )
        return
    plan.record(ShadowResult(primary, answer, primary_latency_s, time.monotonic() - started))


MAX_IN_FLIGHT = 256


def start_shadow(
    app: web.Application,
    ctx: RequestContext,
    primary: Mapping[str, Any] | None,
    primary_latency_s: float,
) -> asyncio.Task[None] | None:
    """Mirror ``ctx`` when a plugin planned it; returns the task (None when nothing to do)."""
    plan = ctx.attributes.get(SHADOW_KEY)
    if not isinstance(plan, ShadowPlan):
        return None
    tasks = app[keys.SHADOW_TASKS]
    if len(tasks) >= MAX_IN_FLIGHT:
        log.warning(
            "dropping shadow request %s -> %s: %d already in flight",
            ctx.request_id,
            plan.model,
            len(tasks),
        )
        return None
    upstream = app[keys.UPSTREAM]

    async def complete(shadow: RequestContext) -> Mapping[str, Any]:
        answer = await upstream.run(shadow)
        if isinstance(answer, StreamAnswer):  # a plugin turned streaming back on
            await answer.close()
            raise UpstreamError("the shadow request was answered as a stream")
        return answer.body

    task = asyncio.create_task(
        mirror(plan, ctx, primary, primary_latency_s, complete),
        name=f"shadow:{ctx.request_id}",
    )
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


def setup_shadow(app: web.Application) -> None:
    """Register after the upstream context, so that shadow tasks end before its session."""
    running: set[asyncio.Task[None]] = set()
    app[keys.SHADOW_TASKS] = running

    async def shadow(app: web.Application) -> AsyncIterator[None]:
        yield
        tasks = [*running]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.append(shadow)
