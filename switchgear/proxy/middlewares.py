"""The gateway's middlewares, one job each, applied outermost first:

``request_id`` → ``tracing`` → ``errors`` → ``metrics`` → ``auth`` → ``body_budget`` →
``rate_limit``. An app leaves out ``tracing`` when tracing is off and ``rate_limit`` when no
rate limit is configured (:func:`middlewares`).

``tracing`` sits outside ``errors`` so the server span sees the status the client gets;
``metrics`` sits outside ``auth``, ``body_budget`` and ``rate_limit`` so their refusals
(401, 413, 503, 429) are counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from switchgear import telemetry
from switchgear.auth import bearer_token, is_loopback, match_key
from switchgear.errors import (
    APIError,
    AuthenticationFailed,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    error_response,
)
from switchgear.proxy import keys
from switchgear.proxy.metrics import NONE, OTHER, metric_key
from switchgear.proxy.ratelimit import token_cost
from switchgear.proxy.request import ENDPOINTS, read_request
from switchgear.settings import Settings
from switchgear.types import ParsedRequest

log = logging.getLogger("switchgear.proxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_ID = 128


def _valid_request_id(value: str | None) -> bool:
    return (
        value is not None and 0 < len(value) <= _MAX_ID and value.isascii() and value.isprintable()
    )


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Honour a sane incoming ``x-request-id`` or make one; echo it on the response.

    A made id is 128 random bits in hex from the process's PRNG (reseeded in each forked
    child): ids must not collide but need not be secret, and ``os.urandom`` is a system call.
    """
    incoming = request.headers.get("x-request-id")
    if incoming is not None and _valid_request_id(incoming):
        rid = incoming
    else:
        rid = f"{random.getrandbits(128):032x}"
    request[keys.REQUEST_ID] = rid
    resp = await handler(request)
    if not resp.prepared:
        resp.headers["x-request-id"] = rid
    return resp


def _summary(request: web.Request, status: int) -> telemetry.RequestSummary:
    parsed = request.get(keys.PARSED_REQUEST)
    answered = request.get(keys.ANSWERED_BY)
    usage = request.get(keys.USAGE)
    return telemetry.RequestSummary(
        status=status,
        endpoint=parsed.endpoint if parsed is not None else None,
        requested_model=parsed.model if parsed is not None else None,
        response_model=answered[0] if answered is not None and answered[1] != "none" else None,
        input_tokens=usage.prompt_tokens if usage is not None else None,
        output_tokens=usage.completion_tokens if usage is not None else None,
        error_type=str(status) if status >= 400 else None,
    )


def _status_of(exc: BaseException) -> int:
    """The status a request that raised ``exc`` is recorded with (499: the client left)."""
    if isinstance(exc, APIError | web.HTTPException):
        return exc.status
    if isinstance(exc, asyncio.CancelledError):
        return 499
    return 500


@web.middleware
async def tracing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One server span per /v1 request (``tracing.enabled``), parent from ``traceparent``."""
    tracer = request.app[keys.TRACING]
    if not tracer.enabled or not request.path.startswith("/v1/"):
        return await handler(request)
    trace = tracer.start_request(
        request.method, request.path, request.headers, request.host, request[keys.REQUEST_ID]
    )
    token = telemetry.activate(trace)
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except BaseException as exc:
        status = _status_of(exc)
        raise
    finally:
        telemetry.deactivate(token)
        trace.finish(_summary(request, status))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error a client can meet becomes OpenAI-shaped JSON; no traceback ever leaves."""
    try:
        return await handler(request)
    except APIError as exc:
        if exc.status >= 500:
            log.debug("request %s: %s %s", request.get(keys.REQUEST_ID), exc.status, exc.message)
        return error_response(exc, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc, request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception(
            "request %s: unhandled error on %s %s",
            request.get(keys.REQUEST_ID),
            request.method,
            request.path,
        )
        return error_response(exc, request, internal="the gateway failed to handle the request")


def metric_model(app: web.Application, parsed: ParsedRequest | None) -> str:
    """The ``model`` label of a request no backend answered: a known model or alias as
    named, ``other`` for any other name, ``none`` when the body was never read."""
    if parsed is None:
        return NONE
    name = parsed.model
    settings = app[keys.SETTINGS]
    known = (
        name in settings.models
        or name in settings.router.aliases
        or name in app[keys.ALIASES]
        or bool(app[keys.REGISTRY].backends(name))
    )
    return name if known else OTHER


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """In-flight gauge for /v1; requests/latency by answering model, backend and status (also
    the refused ones: model ``none`` before the body was read, ``other`` for an unknown
    name); prompt and completion tokens by model and API key id."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    m = request.app[keys.METRICS]
    m.in_flight.inc()
    t0 = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except BaseException as exc:
        status = _status_of(exc)
        raise
    finally:
        m.in_flight.dec()
        answered = request.get(keys.ANSWERED_BY)
        if answered is None:
            answered = (metric_model(request.app, request.get(keys.PARSED_REQUEST)), "none", "none")
        model, backend, datacenter = answered
        m.request_done(model, backend, datacenter, status, time.perf_counter() - t0)
        usage = request.get(keys.USAGE)
        if usage is not None:
            m.tokens(model, metric_key(request.get(keys.API_KEY_ID)), usage)


def check_admin(request: web.Request) -> None:
    """Raise unless the request carries the admin key (and, with ``admin_localhost_only``,
    comes from a loopback peer); 403 when no admin key is configured."""
    admin = request.app[keys.ADMIN_KEY]
    if not admin:
        raise PermissionDenied("the admin API is disabled: no admin key is configured")
    if request.app[keys.SETTINGS].auth.admin_localhost_only and not is_loopback(request.remote):
        raise PermissionDenied("the admin API only answers on loopback")
    if match_key(bearer_token(request.headers), admin) is None:
        raise AuthenticationFailed("missing or invalid admin key")


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """/admin needs the admin key (403 when none is configured); /v1 needs an API key if any exist."""
    path = request.path
    if path.startswith("/admin"):
        check_admin(request)
    elif path.startswith("/v1/"):
        api_keys = request.app[keys.API_KEYS]
        if api_keys:
            token = bearer_token(request.headers)
            if token is None:
                raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'")
            idx = match_key(token, api_keys)
            if idx is None:
                raise AuthenticationFailed("invalid API key")
            request[keys.API_KEY_ID] = f"key-{idx}"
    return await handler(request)


@web.middleware
async def body_budget(request: web.Request, handler: Handler) -> web.StreamResponse:
    """/v1 bodies: 413 over ``max_body_bytes`` by Content-Length, 503 when the process holds
    ``max_body_bytes_in_flight`` already (see :mod:`switchgear.proxy.bodybudget`)."""
    if not request.body_exists or not request.path.startswith("/v1/"):
        return await handler(request)
    app = request.app
    limits = app[keys.SETTINGS].limits
    length = request.content_length
    if length is not None and length > limits.max_body_bytes:
        raise PayloadTooLarge(
            f"request body is {length} bytes; the limit is {limits.max_body_bytes}"
        )
    need = length if length is not None else limits.max_body_bytes
    budget = app[keys.BODY_BUDGET]
    if not budget.take(need):
        raise Overloaded(
            "the gateway holds too many request bodies at once; retry shortly",
            retry_after=1,
        )
    try:
        return await handler(request)
    finally:
        budget.give(need)


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Per-key requests and tokens per minute on /v1 POSTs (429 with Retry-After when over)."""
    limiter = request.app[keys.RATE_LIMITER]
    if not limiter.enabled or request.method != "POST" or not request.path.startswith("/v1/"):
        return await handler(request)
    key = request.get(keys.API_KEY_ID) or f"ip:{request.remote}"
    parsed: ParsedRequest | None = None
    invalid: APIError | None = None
    endpoint = ENDPOINTS.get(request.path)
    if endpoint is not None and limiter.limits(key).tokens_per_minute:
        try:  # the token estimate needs the parsed request; the handler reuses it
            parsed = await read_request(request, endpoint)
        except APIError as exc:
            invalid = exc  # answered once the request is counted, as the handler would
    estimate = token_cost(parsed)
    refused = await limiter.take(key, estimate)
    if refused is not None:
        which, wait = refused
        lim = limiter.limits(key)
        per_minute = lim.requests_per_minute if which == "requests" else lim.tokens_per_minute
        raise RateLimited(
            f"rate limit reached for {key}: {per_minute} {which} per minute; retry in {wait:.1f}s",
            retry_after=wait,
            headers={f"x-ratelimit-limit-{which}": str(per_minute)},
        )
    if invalid is not None:
        raise invalid
    settled = False

    async def settle() -> None:
        nonlocal settled
        used = request.get(keys.TOKENS_USED)
        if used is not None and not settled:
            settled = True
            await limiter.settle(key, estimate, used)

    request[keys.SETTLE] = settle
    try:
        return await handler(request)
    finally:
        await settle()


MIDDLEWARES = (request_id, tracing, errors, metrics, auth, body_budget, rate_limit)


def middlewares(settings: Settings) -> tuple[Middleware, ...]:
    """:data:`MIDDLEWARES` less those that would do nothing under ``settings``: ``tracing``
    with tracing off, ``rate_limit`` with no limit configured (both are fixed for the life
    of an app), so a request does not pass through them."""
    skip = set()
    if not settings.tracing.enabled:
        skip.add(tracing)
    if not settings.rate_limits.enabled():
        skip.add(rate_limit)
    return tuple(m for m in MIDDLEWARES if m not in skip)
