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
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Literal

import aiohttp
import orjson
import pluggy
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from switchgear.errors import APIError, UpstreamError, UpstreamTimeout
from switchgear.plugins.calls import acts_for
from switchgear.plugins.manager import chain_sync
from switchgear.proxy.answers import Answer, StreamAnswer
from switchgear.proxy.frames import CHAT_FRAMES, Frames
from switchgear.proxy.keys import PARSED_REQUEST, REQUEST_ID, SETTLE, TOKENS_USED, UPSTREAM, USAGE
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
                tokens = await _pump(self.resp, self.answer, self.pm, self.transcript, self.frames)
            except _ClientGone as gone:
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


class _ClientGone(Exception):
    def __init__(self, tokens: int) -> None:
        self.tokens = tokens


async def _pump(
    resp: web.StreamResponse,
    answer: StreamAnswer,
    pm: pluggy.PluginManager,
    transcript: Transcript,
    frames: Frames,
) -> int:
    """Relay ``answer``'s chunks until its end; returns the chunks with choices relayed.

    Chunks that are ready together (the next ones decode without waiting on the network)
    go out in one write; whatever is pending is written before the relay waits for the
    backend, and before this returns or raises, so nothing the client was due is held back.
    Upstream failures propagate with a ``tokens`` attribute; a client that went away
    raises :class:`_ClientGone`.
    """
    ctx, backend = answer.ctx, answer.backend
    rename = answer.model if answer.fallback_from is not None else None
    rewrite = acts_for(pm, "rewrite_response", backend)
    out = _Batch(resp)
    pending, encode, record, more = out.parts, frames.chunk, transcript.record, _reader(answer)
    tokens = 0
    batch = [answer.first] if answer.first is not None else []
    answer.first = None  # a resumed answer must not replay it
    try:
        while batch:
            for chunk in batch:
                tokens += 1 if chunk.get("choices") else 0
                if rename is not None and "model" in chunk:
                    chunk["model"] = rename
                chunk = transcript.adopt(chunk)
                if rewrite:
                    chunk = chain_sync(
                        pm, "rewrite_response", "body", ctx=ctx, body=chunk, backend=backend
                    )
                data = encode(chunk)
                if data:
                    pending.append(data)
                record(chunk)
            batch = await _FlushFirst(more(), out.flush)
        await out.flush()
    except ConnectionResetError:
        raise _ClientGone(tokens) from None
    except (_ClientGone, asyncio.CancelledError):
        raise
    except Exception as exc:
        try:
            await out.flush()
        except ConnectionResetError:
            raise _ClientGone(tokens) from None
        exc.tokens = tokens  # type: ignore[attr-defined]
        raise
    return tokens


def _reader(answer: StreamAnswer) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """What reads the next chunks of ``answer``: those of one network read when its
    adapter's stream offers them (``next_batch``, the built-in OpenAI adapter's), else one
    chunk at a time; an empty list at the end."""
    chunks = answer.chunks
    batch: Callable[[], Awaitable[list[dict[str, Any]]]] | None = getattr(
        chunks, "next_batch", None
    )
    if batch is not None:
        return batch

    async def one() -> list[dict[str, Any]]:
        chunk = await anext(chunks, None)
        return [] if chunk is None else [chunk]

    return one


class _Batch:
    """Frames relayed but not yet written to the client."""

    __slots__ = ("resp", "parts")

    def __init__(self, resp: web.StreamResponse) -> None:
        self.resp, self.parts = resp, list[bytes]()

    def add(self, frame: bytes) -> None:
        self.parts.append(frame)

    async def flush(self) -> None:
        if self.parts:
            data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            self.parts.clear()
            await self.resp.write(data)


class _FlushFirst:
    """Await ``inner``; if it has to wait, ``flush()`` is awaited first.

    The client gets every frame that was ready before the relay waits for the backend,
    while frames that are ready together still go out in one write.
    """

    __slots__ = ("inner", "flush")

    def __init__(self, inner: Awaitable[Any], flush: Callable[[], Awaitable[None]]) -> None:
        self.inner, self.flush = inner, flush

    def __await__(self) -> Generator[Any, Any, Any]:
        it = self.inner.__await__()
        try:
            waiting = it.send(None)
        except StopIteration as stop:
            return stop.value  # ready without waiting: keep batching
        try:
            yield from self.flush().__await__()
        except BaseException:
            it.close()
            raise
        while True:  # the rest of ``yield from it``, resuming at the wait it started
            try:
                sent = yield waiting
            except GeneratorExit:
                it.close()
                raise
            except BaseException as exc:
                try:
                    waiting = it.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting = it.send(sent)
                except StopIteration as stop:
                    return stop.value


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
