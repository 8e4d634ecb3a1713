"""Sending answers to the client: JSON bodies, and SSE streams relayed chunk by chunk.

A stream is never buffered: each upstream chunk is written as soon as it is decoded. Once
the first byte reached the client, a failed chat stream is continued on another backend when
a model of the chain supports continuation (:mod:`switchgear.proxy.resume`); otherwise the
client receives an OpenAI-shaped in-band error event and no ``[DONE]``, so a cut answer never
looks complete. A stream that ends badly after every choice's ``finish_reason`` was relayed
(the backend closed without ``[DONE]``) was complete: it gets ``[DONE]`` and no error. What
the client receives of each chunk, of the end and of an error is made by a
:class:`~switchgear.proxy.frames.Frames` (chat SSE unless the endpoint has its own).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import aiohttp
import orjson
import pluggy
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from switchgear.errors import APIError, UpstreamError, UpstreamTimeout
from switchgear.proxy.answers import Answer, StreamAnswer
from switchgear.proxy.frames import CHAT_FRAMES, Frames
from switchgear.proxy.keys import PARSED_REQUEST, REQUEST_ID, SETTLE, TOKENS_USED, UPSTREAM, USAGE
from switchgear.proxy.pump import ClientGone, pump
from switchgear.proxy.ratelimit import streamed_tokens
from switchgear.proxy.resume import Transcript, resume
from switchgear.types import RequestContext

log = logging.getLogger("switchgear.proxy.relay")

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
    resolution = ctx.resolution
    if resolution is not None and resolution.rule is not None:
        headers["x-switchgear-route"] = f"{resolution.model}; rule={resolution.rule}"
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


#: How a relayed stream ended: ``[DONE]`` sent, an in-band error sent, or the client left.
_Outcome = Literal["done", "error", "gone"]


async def relay_stream(
    request: web.Request,
    ctx: RequestContext,
    answer: StreamAnswer,
    pm: pluggy.PluginManager,
    frames: Frames = CHAT_FRAMES,
) -> web.StreamResponse:
    headers = answer_headers(ctx, answer)
    headers.update(SSE_HEADERS)
    headers["x-request-id"] = request[REQUEST_ID]
    resp = web.StreamResponse(status=200, headers=headers)
    relay = _Relay(request, resp, ctx, answer, pm, frames)
    outcome: _Outcome = "gone"
    try:
        try:
            await resp.prepare(request)
        except BaseException:
            answer.attempt.failed(499, "client_gone", fault=False)
            raise
        outcome = await relay.run()
    finally:
        await relay.answer.close(complete=outcome == "done")
        transcript = relay.transcript
        if transcript.total_tokens is not None:
            request[TOKENS_USED] = transcript.total_tokens
        else:  # no usage chunk: charge the text that was streamed, not the estimate
            request[TOKENS_USED] = streamed_tokens(
                request.get(PARSED_REQUEST), transcript.text, transcript.tokens
            )
        request[USAGE] = transcript.final_usage(request.get(PARSED_REQUEST))
    if outcome != "gone":
        settle = request.get(SETTLE)
        if settle is not None:  # charged before the client sees the end of the stream
            await settle()
        await resp.write_eof()
    return resp


class _Relay:
    """One client stream, fed by ``answer`` and then by each stream that resumed it.

    ``ctx`` is the request's context (what a resumed stream continues); each answer's chunks
    go through ``rewrite_response`` with that answer's own context.
    """

    def __init__(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        ctx: RequestContext,
        answer: StreamAnswer,
        pm: pluggy.PluginManager,
        frames: Frames,
    ) -> None:
        self.request, self.resp, self.ctx, self.answer, self.pm = request, resp, ctx, answer, pm
        self.frames = frames
        self.transcript = Transcript()

    async def run(self) -> _Outcome:
        while True:
            try:
                tokens = await pump(self.resp, self.answer, self.pm, self.transcript, self.frames)
            except ClientGone as gone:
                self.answer.attempt.failed(499, "client_gone", fault=False, tokens=gone.tokens)
                return "gone"
            except asyncio.CancelledError:
                self.answer.attempt.failed(499, "cancelled", fault=False)
                raise
            except Exception as exc:
                if self.transcript.complete(self.ctx.request.n if self.ctx.request else None):
                    return await self._finish_cut(exc)
                err = await self._failed(exc)
                if await self._resumed():
                    continue
                return await self._send_error(err)
            return await self._finish(tokens)

    async def _failed(self, exc: Exception) -> APIError:
        """Record the failure of the current stream and close it; returns the in-band error."""
        answer = self.answer
        err, reason = _stream_error(exc, answer.backend.id)
        log.warning(
            "request %s: stream from %s failed after the first byte: %s",
            self.ctx.request_id,
            answer.backend.id,
            reason,
        )
        answer.attempt.failed(err.status, reason, tokens=getattr(exc, "tokens", 0))
        await answer.close(complete=False)
        return err

    async def _finish_cut(self, exc: Exception) -> _Outcome:
        """Finish a stream whose answer was complete when its backend failed it."""
        log.info(
            "request %s: stream from %s ended without [DONE] after its finish reason (%s)",
            self.ctx.request_id,
            self.answer.backend.id,
            type(exc).__name__,
        )
        await self.answer.close(complete=False)
        return await self._finish(getattr(exc, "tokens", 0))

    async def _resumed(self) -> bool:
        """Whether another backend took over the failed stream (it is ``self.answer`` then)."""
        try:
            nxt = await resume(self.request.app[UPSTREAM], self.ctx, self.transcript, self.answer)
        except Exception:
            log.exception("request %s: resuming the stream failed", self.ctx.request_id)
            return False
        if nxt is None:
            return False
        self.answer = nxt
        return True

    async def _send_error(self, err: APIError) -> _Outcome:
        try:
            await self.resp.write(self.frames.error(err.body()))
        except ConnectionResetError:
            return "gone"
        return "error"

    async def _finish(self, tokens: int) -> _Outcome:
        try:
            end = self.frames.done()
            if end:
                await self.resp.write(end)
        except ConnectionResetError:
            self.answer.attempt.failed(499, "client_gone", fault=False, tokens=tokens)
            return "gone"
        self.answer.attempt.done(200, tokens)
        return "done"


def _stream_error(exc: BaseException, backend_id: str) -> tuple[APIError, str]:
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"backend {backend_id} stalled mid-stream"), "stream_timeout"
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError(
            f"connection to backend {backend_id} was lost mid-stream"
        ), "stream_reset"
    if isinstance(exc, APIError):
        return exc, "stream_error"
    if isinstance(exc, HttpProcessingError):  # e.g. an SSE line longer than the read buffer
        return UpstreamError(f"backend {backend_id} sent a malformed stream"), "stream_malformed"
    log.exception("unexpected error while relaying a stream from %s", backend_id)
    return UpstreamError("the stream failed"), "stream_internal"
