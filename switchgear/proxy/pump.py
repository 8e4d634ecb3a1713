"""Relaying one upstream stream's chunks to the client, a network read at a time.

Chunks that are ready together (the next ones decode without waiting on the network) go out
in one write; whatever is pending is written before the relay waits for the backend. Chunks
that nothing changes (no ``rewrite_response`` for the backend, no fallback model to name, not
a continuation, chat SSE frames) go out as the backend sent their JSON when the adapter's
stream offers them so (``next_frames``, the built-in OpenAI adapter's); every other chunk is
encoded again by the stream's :class:`~switchgear.proxy.frames.Frames`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pluggy
from aiohttp import web

from switchgear.plugins.calls import acts_for
from switchgear.plugins.manager import chain_sync
from switchgear.proxy.answers import StreamAnswer
from switchgear.proxy.frames import ChatFrames, Frames
from switchgear.proxy.resume import Transcript

#: What reads the next chunks of a stream, with their frames: ``([], b"")`` at the end.
WithFrames = Callable[[], Awaitable[tuple[list[dict[str, Any]], bytes]]]


class ClientGone(Exception):
    """The client went away; ``tokens`` chunks with choices had been relayed."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens


async def pump(
    resp: web.StreamResponse,
    answer: StreamAnswer,
    pm: pluggy.PluginManager,
    transcript: Transcript,
    frames: Frames,
) -> int:
    """Relay ``answer``'s chunks until its end; returns the chunks with choices relayed.

    Whatever is pending is written before this returns or raises, so nothing the client
    was due is held back. Upstream failures propagate with a ``tokens`` attribute; a client
    that went away raises :class:`ClientGone`.
    """
    relay = _Chunks(answer, pm, transcript, frames)
    out = _Batch(resp)
    try:
        await relay.run(out)
        await out.flush()
    except ConnectionResetError:
        raise ClientGone(relay.tokens) from None
    except (ClientGone, asyncio.CancelledError):
        raise
    except Exception as exc:
        try:
            await out.flush()
        except ConnectionResetError:
            raise ClientGone(relay.tokens) from None
        exc.tokens = relay.tokens  # type: ignore[attr-defined]
        raise
    return relay.tokens


class _Chunks:
    """The chunks of one answer on their way to the client; ``tokens`` counts those with
    choices relayed so far."""

    def __init__(
        self,
        answer: StreamAnswer,
        pm: pluggy.PluginManager,
        transcript: Transcript,
        frames: Frames,
    ) -> None:
        self.answer, self.pm, self.transcript, self.frames = answer, pm, transcript, frames
        self.rename = answer.model if answer.fallback_from is not None else None
        self.rewrite = acts_for(pm, "rewrite_response", answer.backend)
        self.tokens = 0
        changed = self.rewrite or self.rename is not None or transcript.resumes > 0
        as_sent = not changed and type(frames) is ChatFrames
        self.with_frames: WithFrames | None = (
            getattr(answer.chunks, "next_frames", None) if as_sent else None
        )

    async def run(self, out: _Batch) -> None:
        answer = self.answer
        batch = [answer.first] if answer.first is not None else []
        answer.first = None  # a resumed answer must not replay it
        with_frames = self.with_frames
        if with_frames is None:
            more = _reader(answer)
            while batch:
                self.each(batch, out.parts)
                batch = await _FlushFirst(more(), out.flush)
            return
        self.each(batch, out.parts)
        pending, record_all = out.parts, self.transcript.record_all
        while True:
            chunks, data = await _FlushFirst(with_frames(), out.flush)
            if not chunks:
                return
            pending.append(data)
            self.tokens += record_all(chunks)

    def each(self, batch: list[dict[str, Any]], pending: list[bytes]) -> None:
        """Relay each chunk of ``batch``: renamed, adopted, rewritten, encoded, recorded."""
        answer, transcript, rename, rewrite = (
            self.answer,
            self.transcript,
            self.rename,
            self.rewrite,
        )
        encode = self.frames.chunk
        for chunk in batch:
            self.tokens += 1 if chunk.get("choices") else 0
            if rename is not None and "model" in chunk:
                chunk["model"] = rename
            chunk = transcript.adopt(chunk)
            if rewrite:
                chunk = chain_sync(
                    self.pm,
                    "rewrite_response",
                    "body",
                    ctx=answer.ctx,
                    body=chunk,
                    backend=answer.backend,
                )
            data = encode(chunk)
            if data:
                pending.append(data)
            transcript.record(chunk)


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
