"""The lines of a streamed upstream answer, read as whole network reads.

aiohttp's own line iteration (``async for line in resp.content``) finds each line with a
Python loop over its buffer and awaits once per line. :func:`lines` reads whatever arrived
(``readany``) and splits it in one ``bytes.split``, so the frames of one read cost one await,
and adapters see the same thing as before: each line with its ``\\n``, the rest of an
unterminated last line at the end, and :class:`~aiohttp.http_exceptions.LineTooLong` for a
line longer than the response's read buffer (its high-water mark), as aiohttp raises it.

An adapter that knows :class:`Lines` may take the lines a read at a time instead
(:meth:`Lines.reads`), which spares an async-generator step per line: the built-in OpenAI
adapter does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp.http_exceptions import LineTooLong


class Lines:
    """The lines of ``content``: iterate it for each line (with its ``\\n``), or use
    :meth:`reads` for the lines of each network read (without their ``\\n``).

    Use one way per stream. A line over the limit raises :class:`LineTooLong` after the
    lines before it were handed out, in both ways.
    """

    __slots__ = ("content", "limit", "tail", "error", "ended", "_each_line")

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self.content = content
        self.limit = content.get_read_buffer_limits()[1]
        self.tail = b""
        self.error: LineTooLong | None = None
        self.ended = False
        self._each_line: AsyncIterator[bytes] | None = None

    async def _read(self) -> tuple[list[bytes], bool]:
        """The complete lines of the next read, or (the rest of the last line, True) at the
        end; ``([], True)`` once everything was read."""
        limit = self.limit
        while True:
            if self.error is not None:
                raise self.error
            if self.ended:
                return [], True
            data = await self.content.readany()
            if not data:
                self.ended = True
                tail, self.tail = self.tail, b""
                return ([tail] if tail else []), True
            if self.tail:
                data = self.tail + data
            parts = data.split(b"\n")
            tail = self.tail = parts.pop()
            if len(data) >= limit:  # else no line of it can reach the limit
                self._limit(parts, tail)
            if parts:
                return parts, False

    def _limit(self, parts: list[bytes], tail: bytes) -> None:
        """Keep the lines before the first one over the limit, and note the error."""
        limit = self.limit
        for i, part in enumerate(parts):
            if len(part) >= limit:
                self.error = LineTooLong(part[:100] + b"...", limit)
                del parts[i:]
                return
        if len(tail) > limit:
            self.error = LineTooLong(tail[:100] + b"...", limit)

    async def reads(self) -> AsyncIterator[list[bytes]]:
        """The lines of each network read, without their ``\\n`` (the last one may be the
        unterminated rest of the stream); never an empty list."""
        while True:
            parts, end = await self._read()
            if parts:
                yield parts
            if end:
                return

    def __aiter__(self) -> Lines:
        return self

    async def __anext__(self) -> bytes:
        if self._each_line is None:
            self._each_line = self._each()
        return await anext(self._each_line)

    async def aclose(self) -> None:
        if self._each_line is not None:
            await self._each_line.aclose()  # type: ignore[attr-defined]

    async def _each(self) -> AsyncIterator[bytes]:
        while True:
            parts, end = await self._read()
            if end:
                for part in parts:
                    yield part
                return
            for part in parts:
                yield part + b"\n"


def lines(content: aiohttp.StreamReader) -> Lines:
    """The lines of ``content``, each as soon as it is complete (see :class:`Lines`)."""
    return Lines(content)
