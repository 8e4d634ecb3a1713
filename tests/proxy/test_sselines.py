"""Upstream lines read per network read: the same lines as aiohttp's own iteration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.http_exceptions import LineTooLong
from aiohttp.test_utils import TestServer

from switchgear.proxy.sselines import lines
from tests.fakes.sse import sse_server

PIECES = [
    b'data: {"a"',
    b": 1}\n\nda",
    b"ta: 2\r\n",
    b"\n: keep-alive\n\ndata: [DONE]\n\n",
    b"tail",
]


async def serve(pieces: list[bytes], gate: asyncio.Queue[None] | None = None) -> TestServer:
    async def each() -> AsyncIterator[bytes]:
        for piece in pieces:
            if gate is not None:
                await gate.get()  # the test decides when each piece goes out
            yield piece

    return await sse_server(each)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(read_bufsize=1024) as session:
        yield session


async def collect(it: AsyncIterator[bytes]) -> list[bytes]:
    return [line async for line in it]


async def test_same_lines_as_aiohttp_iteration(http: aiohttp.ClientSession) -> None:
    server = await serve(PIECES)
    try:
        async with http.get(server.make_url("/")) as resp:
            ours = await collect(lines(resp.content))
        async with http.get(server.make_url("/")) as resp:
            theirs = await collect(resp.content.__aiter__())
    finally:
        await server.close()
    assert ours == theirs
    assert ours[0] == b'data: {"a": 1}\n' and ours[-1] == b"tail"


async def test_a_line_is_handed_on_before_the_next_read(http: aiohttp.ClientSession) -> None:
    gate: asyncio.Queue[None] = asyncio.Queue()
    server = await serve([b"data: 1\n", b"data: 2\n"], gate)
    try:
        gate.put_nowait(None)
        async with http.get(server.make_url("/")) as resp:
            it = lines(resp.content)
            assert await anext(it) == b"data: 1\n"  # only the first piece was sent
            gate.put_nowait(None)
            assert await anext(it) == b"data: 2\n"
            assert await collect(it) == []
    finally:
        await server.close()


@pytest.mark.parametrize("pieces", [[b"x" * 5000 + b"\n"], [b"x" * 3000, b"x" * 3000]])
async def test_a_line_past_the_read_buffer_is_refused(
    http: aiohttp.ClientSession, pieces: list[bytes]
) -> None:
    server = await serve(pieces)
    try:
        async with http.get(server.make_url("/")) as resp:
            with pytest.raises(LineTooLong):
                await collect(lines(resp.content))
            with pytest.raises(LineTooLong):  # what aiohttp's own iteration raises
                async with http.get(server.make_url("/")) as again:
                    await collect(again.content.__aiter__())
    finally:
        await server.close()


async def test_reads_give_the_same_lines_a_read_at_a_time(http: aiohttp.ClientSession) -> None:
    server = await serve(PIECES)
    try:
        async with http.get(server.make_url("/")) as resp:
            each = await collect(lines(resp.content))
        async with http.get(server.make_url("/")) as resp:
            batches = [batch async for batch in lines(resp.content).reads()]
    finally:
        await server.close()
    assert all(batches)  # never an empty read
    flat = [line for batch in batches for line in batch]
    assert flat == [line.removesuffix(b"\n") for line in each]


async def test_reads_wait_for_the_network_once_per_read(http: aiohttp.ClientSession) -> None:
    gate: asyncio.Queue[None] = asyncio.Queue()
    server = await serve([b"data: 1\n\ndata: 2\n\n", b"data: 3\n\n"], gate)
    try:
        gate.put_nowait(None)
        async with http.get(server.make_url("/")) as resp:
            reads = lines(resp.content).reads()
            assert await anext(reads) == [b"data: 1", b"", b"data: 2", b""]
            gate.put_nowait(None)
            assert await anext(reads) == [b"data: 3", b""]
            assert [batch async for batch in reads] == []
    finally:
        await server.close()


async def test_reads_hand_out_the_lines_before_one_past_the_read_buffer(
    http: aiohttp.ClientSession,
) -> None:
    server = await serve([b"data: 1\n" + b"x" * 5000 + b"\n"])
    try:
        async with http.get(server.make_url("/")) as resp:
            reads = lines(resp.content).reads()
            assert await anext(reads) == [b"data: 1"]
            with pytest.raises(LineTooLong):
                await anext(reads)
    finally:
        await server.close()
