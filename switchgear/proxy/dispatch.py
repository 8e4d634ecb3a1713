"""The shared path of the three proxied endpoints: read, validate, route, call, answer.

Views only name their endpoint and the field that carries the input; everything else
(body limit, JSON parsing, model resolution through aliases and the ``select_model`` hook,
upstream call, JSON or SSE answer) is here, once.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from switchgear.bodies import read_json_object
from switchgear.errors import InvalidRequest, ModelNotFound
from switchgear.plugins.manager import first_result_sync
from switchgear.proxy import keys
from switchgear.proxy.answers import StreamAnswer
from switchgear.proxy.relay import json_response, relay_stream
from switchgear.proxy.shadow import start_shadow
from switchgear.types import Endpoint, ModelInfo, RequestContext, RouteDecision

_INT_FIELDS = ("max_tokens", "max_completion_tokens", "n")


async def read_json(request: web.Request) -> dict[str, Any]:
    if keys.BODY in request:  # parsed by the rate limiter already
        body = request[keys.BODY]
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        return body
    return await read_json_object(request, request.app[keys.SETTINGS].limits.max_body_bytes)


def validate(body: dict[str, Any], endpoint: Endpoint, input_field: str, cap: int | None) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")
    value = body.get(input_field)
    if endpoint == "chat.completions":
        if not isinstance(value, list) or not value or not all(isinstance(m, dict) for m in value):
            raise InvalidRequest(
                "'messages' must be a non-empty array of message objects", param="messages"
            )
    elif value is None or not isinstance(value, str | list):
        raise InvalidRequest(f"'{input_field}' must be a string or an array", param=input_field)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    if (
        "stream_options" in body
        and body["stream_options"] is not None
        and not isinstance(body["stream_options"], dict)
    ):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    for name in _INT_FIELDS:
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InvalidRequest(f"'{name}' must be a positive integer", param=name)
    if cap is not None:
        for name in ("max_tokens", "max_completion_tokens"):
            if name in body and body[name] is not None and body[name] > cap:
                body[name] = cap


def known_models(app: web.Application) -> dict[str, ModelInfo]:
    """The model catalogue (config, catalogue, backend meta, KV) plus every registry model."""
    infos = app[keys.CATALOG].refresh().copy()
    for name in app[keys.REGISTRY].models():
        if name not in infos:
            infos[name] = ModelInfo(name=name)
    return infos


def resolve_model(request: web.Request, ctx: RequestContext) -> None:
    """Set ``ctx.model`` and, when a plugin chose it, ``ctx.route_rule``.

    A configured alias maps to its model first. Every request then goes through the
    ``select_model`` hook: the prompt router acts on routing aliases only, the canary plugin
    on the concrete models its rules name; a third-party plugin may act on anything. When no
    plugin decides, a concrete known model is used as named.
    """
    app = request.app
    name = ctx.requested_model
    models = known_models(app)
    target = app[keys.ALIASES].get(name)
    if target is not None:
        ctx.model = target
    routed = target is None and name in app[keys.SETTINGS].router.aliases
    decision = first_result_sync(app[keys.PLUGINS], "select_model", ctx=ctx, models=models)
    if isinstance(decision, RouteDecision):
        ctx.model, ctx.route_rule = decision.model, decision.rule
        ctx.attributes["routed_model"] = decision.model
        alias = name if routed or name in models or target is not None else "other"
        app[keys.METRICS].route_decision(alias, decision.model, decision.rule)
        return
    if not routed and (ctx.model in models or app[keys.REGISTRY].backends(ctx.model)):
        return
    if routed and not models:
        raise ModelNotFound(f"no model can serve the routing alias `{name}`", param="model")
    if not routed:
        available = ", ".join(sorted(models)) or "none"
        raise ModelNotFound(
            f"The model `{name}` does not exist. Available models: {available}", param="model"
        )
    raise ModelNotFound(
        f"no routing plugin chose a model for `{name}`; available models: "
        f"{', '.join(sorted(models))}",
        param="model",
    )


async def dispatch(
    request: web.Request, endpoint: Endpoint, input_field: str
) -> web.StreamResponse:
    app = request.app
    body = await read_json(request)
    validate(body, endpoint, input_field, app[keys.SETTINGS].limits.max_tokens_cap)
    model = body["model"]
    ctx = RequestContext(
        request_id=request[keys.REQUEST_ID],
        endpoint=endpoint,
        body=body,
        requested_model=model,
        model=model,
        stream=endpoint != "embeddings" and body.get("stream") is True,
        api_key_id=request.get(keys.API_KEY_ID),
    )
    resolve_model(request, ctx)
    request[keys.ANSWERED_BY] = (ctx.model, "none", "none")
    t0 = time.perf_counter()
    answer = await app[keys.UPSTREAM].run(ctx)
    backend = answer.backend
    request[keys.ANSWERED_BY] = (answer.model, backend.id, backend.datacenter)
    if answer.fallback_from is not None:
        app[keys.METRICS].fallback(answer.fallback_from, answer.model)
    if isinstance(answer, StreamAnswer):
        resp = await relay_stream(request, ctx, answer, app[keys.PLUGINS])
        start_shadow(app, ctx, None, time.perf_counter() - t0)
        return resp
    start_shadow(app, ctx, answer.body, time.perf_counter() - t0)
    usage = answer.body.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
        request[keys.TOKENS_USED] = usage["total_tokens"]
    return json_response(ctx, answer)
