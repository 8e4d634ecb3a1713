"""The lines of a streamed upstream answer, read as whole network reads.

aiohttp's own line iteration (``async for line in resp.content``) finds each line with a
Python loop over its buffer and awaits once per line. :func:`lines` reads whatever arrived
(``readany``) and splits it in one ``bytes.split``, so the frames of one read cost one await,
and adapters see the same thing as before: each line with its ``\\n``, the rest of an
unterminated last line at the end, and :class:`~aiohttp.http_exceptions.LineTooLong` for a
line longer than the response's read buffer (its high-water mark), as aiohttp raises it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp.http_exceptions import LineTooLong


async def lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Each line of ``content`` (with its ``\\n``) as soon as it is complete."""
    limit = content.get_read_buffer_limits()[1]
    tail = b""
    while True:
        data = await content.readany()
        if not data:
            break
        if tail:
            data = tail + data
        parts = data.split(b"\n")
        tail = parts.pop()
        for part in parts:
            if len(part) >= limit:
                raise LineTooLong(part[:100] + b"...", limit)
            yield part + b"\n"
        if len(tail) > limit:
            raise LineTooLong(tail[:100] + b"...", limit)
    if tail:
        yield tail
