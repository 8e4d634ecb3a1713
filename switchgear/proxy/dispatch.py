"""The shared path of the proxied endpoints: read, route, call, answer.

Views only name their endpoint; everything else (the parsed request of
:mod:`switchgear.proxy.request`, model resolution through aliases and the ``select_model``
hook, upstream call, JSON or SSE answer) is here, once. The Responses API takes the same
path as its chat translation; only its answer is framed as a ``response`` (or its events).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from aiohttp import web

from switchgear import telemetry
from switchgear.errors import ModelNotFound
from switchgear.plugins.manager import first_result_sync
from switchgear.proxy import keys
from switchgear.proxy.answers import StreamAnswer
from switchgear.proxy.frames import CHAT_FRAMES, Frames
from switchgear.proxy.relay import json_response, relay_stream
from switchgear.proxy.request import read_request
from switchgear.proxy.responses import ResponseEvents, as_response
from switchgear.proxy.shadow import start_shadow
from switchgear.types import (
    Endpoint,
    ModelInfo,
    ModelResolution,
    ParsedRequest,
    RequestContext,
    RouteDecision,
    Usage,
)


def known_models(app: web.Application) -> Mapping[str, ModelInfo]:
    """The model catalogue (config, catalogue, backend meta, KV) plus every registry model.

    Read-only and shared: rebuilt only when the registry or the KV catalogue changed.
    """
    return app[keys.CATALOG].known()


def request_context(request: web.Request, parsed: ParsedRequest) -> RequestContext:
    """The context ``select_model`` sees: ``model`` is the alias target, else the name sent.

    Read after :func:`known_models`, which brings the alias map up to date.
    """
    name = parsed.model
    return RequestContext(
        request_id=request[keys.REQUEST_ID],
        endpoint=parsed.endpoint,
        body=parsed.body,
        requested_model=name,
        model=request.app[keys.ALIASES].get(name, name),
        stream=parsed.stream,
        api_key_id=request.get(keys.API_KEY_ID),
        request=parsed,
    )


def resolve_model(
    app: web.Application, ctx: RequestContext, models: Mapping[str, ModelInfo]
) -> ModelResolution:
    """The model for ``ctx`` and, when a plugin chose it, the rule that did.

    A configured alias maps to its model first. Every request then goes through the
    ``select_model`` hook: the prompt router acts on routing aliases only, the canary plugin
    on the concrete models its rules name; a third-party plugin may act on anything. When no
    plugin decides, a concrete known model is used as named.
    """
    name = ctx.requested_model
    aliased = name in app[keys.ALIASES]
    routed = not aliased and name in app[keys.SETTINGS].router.aliases
    decision = first_result_sync(app[keys.PLUGINS], "select_model", ctx=ctx, models=models)
    if isinstance(decision, RouteDecision):
        alias = name if routed or name in models or aliased else "other"
        app[keys.METRICS].route_decision(alias, decision.model, decision.rule)
        return ModelResolution(name, decision.model, decision.rule)
    if not routed and (ctx.model in models or app[keys.REGISTRY].backends(ctx.model)):
        return ModelResolution(name, ctx.model)
    raise _not_found(name, routed, models)


def _not_found(name: str, routed: bool, models: Mapping[str, ModelInfo]) -> ModelNotFound:
    if routed and not models:
        return ModelNotFound(f"no model can serve the routing alias `{name}`", param="model")
    if not routed:
        available = ", ".join(sorted(models)) or "none"
        return ModelNotFound(
            f"The model `{name}` does not exist. Available models: {available}", param="model"
        )
    return ModelNotFound(
        f"no routing plugin chose a model for `{name}`; available models: "
        f"{', '.join(sorted(models))}",
        param="model",
    )


async def dispatch(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    app = request.app
    parsed = await read_request(request, endpoint)
    models = known_models(app)
    ctx = request_context(request, parsed)
    resolution = resolve_model(app, ctx, models)
    ctx = ctx.routed(resolution)
    request[keys.ANSWERED_BY] = (resolution.model, "none", "none")
    t0 = time.perf_counter()
    answer = await app[keys.UPSTREAM].run(ctx)
    backend = answer.backend
    resolution.answered(answer.model, backend)
    request[keys.ANSWERED_BY] = (answer.model, backend.id, backend.datacenter)
    if answer.fallback_from is not None:
        app[keys.METRICS].fallback(answer.fallback_from, answer.model)
        telemetry.event("switchgear.fallback", {"from": answer.fallback_from, "to": answer.model})
    if isinstance(answer, StreamAnswer):
        resp = await relay_stream(request, ctx, answer, app[keys.PLUGINS], _frames(ctx, parsed))
        start_shadow(app, ctx, None, time.perf_counter() - t0)
        return resp
    start_shadow(app, ctx, answer.body, time.perf_counter() - t0)
    usage = answer.body.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
        request[keys.TOKENS_USED] = usage["total_tokens"]
    if (tokens := Usage.of(usage)) is not None:
        request[keys.USAGE] = tokens
    if parsed.responses is not None:
        answer.body = as_response(answer.body, parsed.responses, ctx.request_id)
    return json_response(ctx, answer)


def _frames(ctx: RequestContext, parsed: ParsedRequest) -> Frames:
    """The client's stream format: Responses events for the Responses API, else chat SSE."""
    if parsed.responses is None:
        return CHAT_FRAMES
    return ResponseEvents(parsed.responses, ctx.request_id, ctx.model)
