"""Sending answers to the client: JSON bodies, and SSE streams relayed chunk by chunk.

A stream is never buffered: each upstream chunk is written as soon as it is decoded. Once
the first byte reached the client, a failure cannot be retried; the client then receives an
OpenAI-shaped in-band error event and no ``[DONE]``, so a cut answer never looks complete.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
import pluggy
from aiohttp import web

from switchgear.errors import APIError, UpstreamError, UpstreamTimeout
from switchgear.plugins.manager import chain_sync
from switchgear.proxy.answers import Answer, StreamAnswer
from switchgear.proxy.keys import REQUEST_ID
from switchgear.types import RequestContext

log = logging.getLogger("switchgear.proxy.relay")

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def answer_headers(ctx: RequestContext, answer: Answer | StreamAnswer) -> dict[str, str]:
    b = answer.backend
    headers = {"x-switchgear-backend": f"{b.id}; dc={b.datacenter}"}
    if answer.fallback_from is not None:
        headers["x-switchgear-fallback"] = f"{answer.fallback_from} -> {answer.model}"
    if ctx.route_rule is not None:
        routed = ctx.attributes.get("routed_model", ctx.model)
        headers["x-switchgear-route"] = f"{routed}; rule={ctx.route_rule}"
    return headers


def json_response(ctx: RequestContext, answer: Answer) -> web.Response:
    body = answer.body
    if answer.fallback_from is not None or "model" not in body:
        body["model"] = answer.model
    return web.Response(
        body=orjson.dumps(body),
        content_type="application/json",
        headers=answer_headers(ctx, answer),
    )


async def relay_stream(
    request: web.Request, ctx: RequestContext, answer: StreamAnswer, pm: pluggy.PluginManager
) -> web.StreamResponse:
    headers = answer_headers(ctx, answer)
    headers.update(SSE_HEADERS)
    headers["x-request-id"] = request[REQUEST_ID]
    resp = web.StreamResponse(status=200, headers=headers)
    backend, att = answer.backend, answer.attempt
    rename = answer.model if answer.fallback_from is not None else None
    tokens = 0
    complete = False
    writing = True
    try:
        await resp.prepare(request)
        chunk = answer.first
        while chunk is not None:
            tokens += _tokens(chunk)
            if rename is not None and "model" in chunk:
                chunk["model"] = rename
            chunk = chain_sync(pm, "rewrite_response", "body", ctx=ctx, body=chunk, backend=backend)
            writing = True
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            writing = False
            chunk = await anext(answer.chunks, None)
        writing = True
        await resp.write(DONE)
        att.done(200, tokens)
        complete = True
    except asyncio.CancelledError:
        att.failed(499, "cancelled", fault=False, tokens=tokens)
        raise
    except Exception as exc:
        if writing and isinstance(exc, ConnectionResetError):  # the client went away mid-stream
            att.failed(499, "client_gone", fault=False, tokens=tokens)
            return resp
        err, reason = _stream_error(exc, backend.id)
        log.warning(
            "request %s: stream from %s failed after the first byte: %s",
            ctx.request_id,
            backend.id,
            reason,
        )
        att.failed(err.status, reason, tokens=tokens)
        try:
            await resp.write(b"data: " + orjson.dumps(err.body()) + b"\n\n")
        except ConnectionResetError:
            return resp
    finally:
        await answer.close(complete=complete)
    await resp.write_eof()
    return resp


def _stream_error(exc: BaseException, backend_id: str) -> tuple[APIError, str]:
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"backend {backend_id} stalled mid-stream"), "stream_timeout"
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError(
            f"connection to backend {backend_id} was lost mid-stream"
        ), "stream_reset"
    if isinstance(exc, APIError):
        return exc, "stream_error"
    log.exception("unexpected error while relaying a stream from %s", backend_id)
    return UpstreamError("the stream failed"), "stream_internal"


def _tokens(chunk: dict[str, Any]) -> int:
    return 1 if chunk.get("choices") else 0
