"""The OpenAI adapter's stream read a network read at a time: the same chunks, in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from switchgear.default_plugins.openai_adapter import DataStream
from switchgear.errors import UpstreamError
from switchgear.proxy.sselines import lines
from switchgear.types import Backend, RequestContext
from tests.fakes.sse import sse_server

BACKEND = Backend("b1", "m", "http://127.0.0.1:1/v1")
CTX = RequestContext("rid", "chat.completions", {}, "m", "m", True)


def frame(i: int) -> bytes:
    return b'data: {"choices": [{"index": 0, "delta": {"content": "t%d"}}]}\n\n' % i


Upstream = tuple[TestServer, asyncio.Queue[bytes | None]]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """The upstream and the queue of its reads: the test sends each read, ``None`` ends it."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def pieces() -> AsyncIterator[bytes]:
        while (piece := await queue.get()) is not None:
            yield piece

    server = await sse_server(pieces)
    yield server, queue
    await server.close()


@contextlib.asynccontextmanager
async def stream_of(server: TestServer) -> AsyncIterator[DataStream]:
    """The adapter's stream of one request to ``server``, read through :func:`lines`."""
    async with aiohttp.ClientSession() as http, http.get(server.make_url("/")) as resp:
        yield DataStream(BACKEND, CTX, lines(resp.content))


def texts(chunks: list[dict[str, object]]) -> list[object]:
    return [c["choices"][0]["delta"]["content"] for c in chunks]  # type: ignore[index]


async def test_chunks_by_read_and_one_by_one_in_turn(upstream: Upstream) -> None:
    server, pieces = upstream
    async with stream_of(server) as stream:
        pieces.put_nowait(frame(0) + b": keep-alive\n\n" + frame(1) + b"data: {bad\n\n" + frame(2))
        assert texts([await anext(stream)]) == ["t0"]
        assert texts(await stream.next_batch()) == ["t1", "t2"]  # the rest of that read
        pieces.put_nowait(frame(3) + b"data: [DONE]\n\n" + frame(4))
        assert texts(await stream.next_batch()) == ["t3"]  # nothing after [DONE]
        assert await stream.next_batch() == []
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        await stream.aclose()


async def test_an_error_object_comes_after_the_chunks_before_it(upstream: Upstream) -> None:
    server, pieces = upstream
    async with stream_of(server) as stream:
        pieces.put_nowait(frame(0) + b'data: {"error": {"message": "boom"}}\n\n' + frame(1))
        assert texts(await stream.next_batch()) == ["t0"]
        with pytest.raises(UpstreamError, match="boom"):
            await stream.next_batch()
        await stream.aclose()


async def test_the_end_without_done_is_an_error(upstream: Upstream) -> None:
    server, pieces = upstream
    async with stream_of(server) as stream:
        pieces.put_nowait(frame(0))
        pieces.put_nowait(None)
        assert texts([c async for c in _until_error(stream)]) == ["t0"]


async def _until_error(stream: DataStream) -> AsyncIterator[dict[str, object]]:
    with pytest.raises(UpstreamError, match="without \\[DONE\\]"):
        async for chunk in stream:
            yield chunk
    await stream.aclose()


async def test_frames_are_the_json_as_sent_after_the_chunks_handed_out(upstream: Upstream) -> None:
    server, pieces = upstream
    async with stream_of(server) as stream:
        spaced = b'data:  {"choices": [{"index": 0, "delta": {"content": "t9"}}]} \r\n\r\n'
        pieces.put_nowait(frame(0) + frame(1) + b"data: {bad\n\n" + spaced)
        assert texts([await anext(stream)]) == ["t0"]
        chunks, frames = await stream.next_frames()
        assert texts(chunks) == ["t1", "t9"]
        assert (
            frames
            == frame(1) + b'data: {"choices": [{"index": 0, "delta": {"content": "t9"}}]}\n\n'
        )
        pieces.put_nowait(b'data: {"choices":\r[]}\n\n' + frame(2) + b"data: [DONE]\n\n")
        chunks, frames = await stream.next_frames()
        assert frames == b'data: {"choices":[]}\n\n' + frame(2)  # a \r inside: encoded again
        assert await stream.next_frames() == ([], b"")
        await stream.aclose()
